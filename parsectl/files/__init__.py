"""Files: the files-adapter boundary (parse-server's FilesAdapter) and its three adapters.

* :mod:`parsectl.files.fs`: a local directory (the embedded default, ``<dataDir>/files``)
* :mod:`parsectl.files.gridfs`: GridFS on the MongoDB ``databaseURI`` (parse-server's default with MongoDB)
* :mod:`parsectl.files.s3`: Amazon S3 or an S3-compatible store (parse-server's S3 adapter options)

:func:`adapter_for` picks one from :class:`~parsectl.server.config.ServerOptions`.
"""

from __future__ import annotations

from parsectl.files.base import (
    FileNotFound,
    FilesAdapter,
    FilesConfig,
    FileStat,
    default_location,
    encode_uri_component,
    validate_filename,
)
from parsectl.files.factory import adapter_for, file_url

__all__ = [
    "FileNotFound", "FileStat", "FilesAdapter", "FilesConfig", "adapter_for", "default_location",
    "encode_uri_component", "file_url", "validate_filename",
]
