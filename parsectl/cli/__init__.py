"""The ``parsectl`` command line: thin Typer commands over the library packages."""
