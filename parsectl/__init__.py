"""parsectl: run Parse apps on your own infrastructure."""

__version__ = "0.1.0"
