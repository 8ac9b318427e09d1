"""Choose a files adapter from the server options, and the URLs of File values."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parsectl.files.base import FilesAdapter, FilesConfig, check_options, encode_uri_component

if TYPE_CHECKING:
    from parsectl.server.config import ServerOptions

# module names parse-server configurations use for the same adapters
_ALIASES = {
    "fs": "fs", "filesystem": "fs", "@parse/fs-files-adapter": "fs", "FSFilesAdapter": "fs",
    "FileSystemAdapter": "fs",
    "gridfs": "gridfs", "GridFSBucketAdapter": "gridfs", "GridStoreAdapter": "gridfs",
    "s3": "s3", "@parse/s3-files-adapter": "s3", "parse-server-s3-adapter": "s3", "S3Adapter": "s3",
}
_FS_OPTIONS = {"filesSubDirectory", "encryptionKey", "filesDirectory"}
_GRIDFS_OPTIONS = {"databaseURI", "mongoOptions", "encryptionKey"}
_LEGACY_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}-")


def data_dir(database_uri: str) -> Path:
    """The embedded data directory: the SQLite file's directory, else the working directory."""
    if database_uri.startswith("sqlite:"):
        path = database_uri.removeprefix("sqlite://").removeprefix("sqlite:")
        path = path.split("?", 1)[0]
        if path.startswith("//"):  # sqlite:////abs/path (POSIX treats // as /)
            path = "/" + path.lstrip("/")
        if path and path != ":memory:" and not path.startswith("/:memory:"):
            return Path(path).parent
    return Path(".")


def default_files_adapter(database_uri: str, data_dir: Path) -> dict[str, Any] | None:
    """The files adapter of `parsectl serve --data-dir` (and of `migrate`, which fills it) when none is
    configured: a folder ``<data_dir>/files`` for a PostgreSQL database; None (:func:`adapter_for`'s default)
    for MongoDB (GridFS) and SQLite (``files`` beside the database file, in the data dir by default)."""
    if database_uri.startswith(("mongodb://", "mongodb+srv://", "sqlite:")):
        return None
    return {"module": "fs", "options": {"filesDirectory": str(data_dir / "files")}}


def adapter_for(options: ServerOptions) -> FilesAdapter:
    """The adapter ``options.files_adapter`` names (``{"module": ..., "options": {...}}`` or a module name);
    by default GridFS for a mongodb:// databaseURI and a local directory otherwise.

    Bad options raise ValueError naming the option.
    """
    spec: Any = options.files_adapter
    is_mongo = options.database_uri.startswith(("mongodb://", "mongodb+srv://"))
    if spec is None:
        spec = {"module": "gridfs" if is_mongo else "fs"}
    elif isinstance(spec, str):
        spec = {"module": spec}
    if not isinstance(spec, dict):
        raise ValueError("option 'filesAdapter' must be an object such as {\"module\": \"s3\", \"options\": {...}}")
    unknown = set(spec) - {"module", "options"}
    if unknown:
        raise ValueError(f"option 'filesAdapter' has unknown key {sorted(unknown)[0]!r} (use 'module' and 'options')")
    module = spec.get("module")
    if not isinstance(module, str) or module not in _ALIASES:
        raise ValueError(f"filesAdapter 'module' must be one of fs, gridfs or s3, not {module!r}")
    kind = _ALIASES[module]
    raw = spec.get("options")

    if kind == "fs":
        from parsectl.files.fs import FSFilesAdapter

        opts = check_options(kind, raw, _FS_OPTIONS)
        sub = opts.get("filesSubDirectory") or ""
        if not isinstance(sub, str) or sub.startswith(("/", "\\")) or ".." in Path(sub).parts:
            raise ValueError("filesAdapter option 'filesSubDirectory' must be a relative path without '..'")
        base = opts.get("filesDirectory")
        if base is not None and (not isinstance(base, str) or not base):
            raise ValueError("filesAdapter option 'filesDirectory' must be a directory path")
        directory = Path(base) if base else data_dir(options.database_uri) / "files"
        return FSFilesAdapter(directory / sub if sub else directory, _encryption_key(opts))

    if kind == "gridfs":
        from parsectl.files.gridfs import GridFSFilesAdapter

        opts = check_options(kind, raw, _GRIDFS_OPTIONS)
        uri = opts.get("databaseURI", options.database_uri)
        if not isinstance(uri, str) or not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError("filesAdapter option 'databaseURI' must be a mongodb:// URI for the 'gridfs' adapter "
                             f"(the databaseURI is {options.database_uri!r})")
        mongo_options = opts.get("mongoOptions", options.database_options if is_mongo else {})
        if not isinstance(mongo_options, dict):
            raise ValueError("filesAdapter option 'mongoOptions' must be an object")
        # parse-server hands fileKey to its default GridFS adapter as the encryption key
        key = _encryption_key(opts) if "encryptionKey" in opts else options.file_key
        return GridFSFilesAdapter(uri, mongo_options, key)

    from parsectl.files.s3 import OPTIONS, S3FilesAdapter

    return S3FilesAdapter(check_options(kind, raw, OPTIONS))


def _encryption_key(opts: dict[str, Any]) -> str | None:
    key = opts.get("encryptionKey")
    if key is not None and (not isinstance(key, str) or not key):
        raise ValueError("filesAdapter option 'encryptionKey' must be a non-empty string")
    return key


def file_url(adapter: FilesAdapter | None, config: FilesConfig, file_key: str | None, name: str) -> str:
    """The ``url`` of a File value (parse-server's ``expandFilesInObject``): legacy hosted-Parse names get
    their old host when ``fileKey`` is set; everything else gets the adapter's location."""
    if file_key is not None:
        if name.startswith("tfss-"):
            return f"http://files.parsetfss.com/{file_key}/{encode_uri_component(name)}"
        if _LEGACY_UUID.match(name):
            return f"http://files.parse.com/{file_key}/{encode_uri_component(name)}"
    if adapter is None:
        from parsectl.files.base import default_location

        return default_location(config, name)
    return adapter.get_file_location(config, name)
