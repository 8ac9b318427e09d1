"""The ``/files`` routes, as parse-server 9.10's ``FilesRouter`` answers them.

They run before the JSON body parser (the app hands any ``/files`` path here first):

* ``POST /files/:filename``: a raw body of any content type, or the JS SDK's text/plain JSON
  ``{"base64", "fileData", "_ContentType", "_ApplicationId", ...}``; with ``X-Parse-Upload-Mode: stream``
  the body is read in chunks against ``maxUploadSize`` (130 when exceeded). Keys as for every route;
  ``fileUpload`` decides who may upload (master always). 201 ``{url, name}`` with ``Location``.
* ``GET /files/:appId/*name``: no keys; the bytes, ``X-Content-Type-Options: nosniff``; a ``Range`` header
  gets 206 with ``Content-Range``.
* ``GET /files/:appId/metadata/*name``: ``{"metadata": ...}`` or ``{}``.
* ``DELETE /files/*name``: master key only (403 ``{"error":"Permission denied"}``); 200 with an empty body.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from parsectl.cloud.registry import AFTER_DELETE, AFTER_SAVE, BEFORE_DELETE, BEFORE_SAVE, CloudFile
from parsectl.files import FileNotFound, FilesAdapter, FilesConfig, validate_filename
from parsectl.files.mime import extension_for_type, extension_of, type_for_name
from parsectl.model import errors, query
from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.auth import Auth
from parsectl.server.config import ServerOptions, parse_size
from parsectl.server.envelope import KeyInfo, KeyPolicy, apply_body_keys, read_headers, unauthorized
from parsectl.server.http import BodyTooLarge, Response, read_body
from parsectl.server.rest import _check_denylist
from parsectl.server.schemas import SchemaController
from parsectl.storage.base import StorageAdapter

log = logging.getLogger("parsectl.server.files")

INVALID_FILE_NAME = 122
FILE_SAVE_ERROR = 130
FILE_DELETE_ERROR = 153
SCRIPT_FAILED = 141

DEFAULT_FILE_EXTENSIONS = [
    r"^(?!([xXsS]?[hH][tT][mM][lL]?(\+[xX][mM][lL])?|[xX][hH][tT]|[sS][vV][gG]([zZ]|\+[xX][mM][lL])?|[xX][mM][lL]"
    r"|[xX][sS][lL][tT]?(\+[xX][mM][lL])?|[xX][sS][dD]|[rR][nN][gG]|[rR][dD][fF](\+[xX][mM][lL])?|[oO][wW][lL]"
    r"|[mM][aA][tT][hH][mM][lL](\+[xX][mM][lL])?)$)"
]
_UPLOAD_FLAGS = {"enableForPublic": False, "enableForAnonymousUser": False, "enableForAuthenticatedUser": True}
_MEDIA_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
_DIRECTORY = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_\-/]*$")
_RESERVED_SEGMENTS = ("metadata",)

ResolveSession = Callable[[Auth], Awaitable[None]]


def _forbidden() -> HTTPError:
    """parse-server's sanitized 403 (``enforceMasterKeyAccess``, bad app id, master-only headers)."""
    return HTTPError(403, "Permission denied")


class UploadRules:
    """The ``fileUpload`` option with parse-server 9's defaults (ValueError naming a bad entry)."""

    def __init__(self, file_upload: dict[str, Any]) -> None:
        for key, default in _UPLOAD_FLAGS.items():
            value = file_upload.get(key, default)
            if not isinstance(value, bool):
                raise ValueError(f"option 'fileUpload.{key}' must be true or false")
            setattr(self, key, value)
        extensions = file_upload.get("fileExtensions", DEFAULT_FILE_EXTENSIONS)
        if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
            raise ValueError("option 'fileUpload.fileExtensions' must be an array of strings")
        self.file_extensions: list[str] = extensions
        self.allow_all = "*" in extensions
        try:
            self._patterns = [re.compile(e) for e in extensions if e != "*"]
        except re.error as exc:
            raise ValueError(f"option 'fileUpload.fileExtensions' has an invalid pattern: {exc}") from None

    enableForPublic: bool
    enableForAnonymousUser: bool
    enableForAuthenticatedUser: bool

    def extension_allowed(self, extension: str) -> bool:
        return self.allow_all or any(p.search(extension) for p in self._patterns)


class FilesApi:
    def __init__(self, options: ServerOptions, adapter: FilesAdapter, keys: KeyPolicy,
                 resolve_session: ResolveSession, base_url: Callable[[dict[str, Any], str], str],
                 storage: StorageAdapter, schemas: SchemaController) -> None:
        self.options = options
        self.adapter = adapter
        self.keys = keys
        self.rules = UploadRules(options.file_upload)
        self._resolve_session = resolve_session
        self._base_url = base_url
        self.storage = storage
        self.schemas = schemas

    cloud: Any = None  # the Cloud Code runtime (file triggers), set by ParseServer
    rest: Any = None  # the RestService, for the triggers' request.user

    async def _load_user(self, user_id: str) -> dict[str, Any] | None:
        schema = await self.schemas.get("_User")
        if schema is None:
            return None
        rows = await self.storage.find(schema, query.Compare("objectId", "eq", user_id), limit=1)
        return rows[0] if rows else None

    def config(self, scope: dict[str, Any], root: str) -> FilesConfig:
        return FilesConfig(self.options.app_id, self._base_url(scope, root).rstrip("/"))

    # --- dispatch ---------------------------------------------------------------------------------------
    async def handle(self, scope: dict[str, Any], receive: Any, method: str, path: str,
                     root: str) -> Response | None:
        """The response for a ``/files`` route; None (body unread) when no files route matches."""
        parts = path.split("/")[2:]  # "/files/a/b" -> ["a", "b"]
        if method == "POST":
            if not parts:
                raise ParseError(INVALID_FILE_NAME, "Filename not provided.")
            return await self.upload(scope, receive, "/".join(parts), root)
        if method == "GET" and len(parts) >= 2:
            app_id = parts[0]
            if parts[1] == "metadata" and len(parts) >= 3:
                return await self.metadata(scope, app_id, "/".join(parts[2:]))
            return await self.download(scope, app_id, "/".join(parts[1:]))
        if method == "DELETE" and parts:
            return await self.delete(scope, receive, "/".join(parts), root)
        return None

    # --- auth -------------------------------------------------------------------------------------------
    async def _auth(self, scope: dict[str, Any], info: KeyInfo) -> Auth:
        client = scope.get("client")
        auth = self.keys.authorize(info, client[0] if client else None)
        if auth.session_token and not auth.master:
            await self._resolve_session(auth)
        return auth

    async def _check_upload_allowed(self, auth: Auth) -> None:
        if auth.master:
            return
        rules = self.rules
        user = await self._load_user(auth.user_id) if auth.user_id else None
        anonymous = bool(user and isinstance(user.get("authData"), dict)
                         and user["authData"].get("anonymous") is not None)
        if anonymous and not rules.enableForAnonymousUser:
            raise ParseError(FILE_SAVE_ERROR, "File upload by anonymous user is disabled.")
        if auth.user_id and not anonymous and not rules.enableForAuthenticatedUser:
            raise ParseError(FILE_SAVE_ERROR, "File upload by authenticated user is disabled.")
        if not auth.user_id and not rules.enableForPublic:
            raise ParseError(FILE_SAVE_ERROR, "File upload by public is disabled.")

    def _check_extension(self, filename: str, content_type: str | None) -> None:
        """parse-server 9.10's extension rules for non-master uploads (130 when refused)."""
        rules = self.rules

        def refuse(ext: str) -> ParseError:
            return ParseError(FILE_SAVE_ERROR, f"File upload of extension {ext} is disabled.")

        extension = re.sub(r"\s+", "", extension_of(filename).split(";")[0])
        recognized = bool(extension) and type_for_name(filename) is not None
        if extension and not rules.extension_allowed(extension):
            raise refuse(extension)
        if recognized or not content_type or rules.allow_all:
            return
        slash = content_type.find("/")
        kind = content_type[:slash].strip() if slash > 0 else ""
        subtype = content_type[slash + 1:].split(";")[0].strip() if slash > 0 else ""
        if not _MEDIA_TOKEN.match(kind) or not _MEDIA_TOKEN.match(subtype):
            bare = re.sub(r"\s+", "", content_type.split(";")[0] if slash < 0 else kind)
            if bare and not rules.extension_allowed(bare):
                raise refuse(bare)
            raise ParseError(FILE_SAVE_ERROR, "Invalid Content-Type.")
        sub_ext = re.sub(r"\s+", "", subtype)
        if not rules.extension_allowed(sub_ext):
            raise refuse(sub_ext)

    # --- POST /files/:filename -------------------------------------------------------------------------
    async def upload(self, scope: dict[str, Any], receive: Any, filename: str, root: str) -> Response:
        headers = _headers(scope)
        limit = self.options.max_upload_bytes
        override = headers.get("x-parse-file-max-upload-size")
        if override:
            limit = self._upload_size_override(scope, headers, override)
        streaming = headers.get("x-parse-upload-mode") == "stream"

        raw = b"" if streaming else await read_body(receive, limit)
        info = read_headers(scope.get("headers", []))
        content_type: str | None = headers.get("content-type")
        file_data: Any = None
        if info.app_id != self.options.app_id:
            # the JS SDK's form: a text/plain JSON body carrying the keys and the base64 bytes
            body: Any = None
            if not streaming:
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise unauthorized() from None
            apply_body_keys(info, body, self.options)
            for attr in ("installation_id", "session_token", "master_key", "content_type"):
                value = getattr(info, attr)
                if value is not None and not isinstance(value, str):
                    raise unauthorized()
            encoded = body.get("base64")
            if encoded is not None and not isinstance(encoded, str):
                raise unauthorized()
            raw = _b64decode(encoded or "")
            file_data = body.get("fileData")
            if info.content_type:
                content_type = info.content_type
        auth = await self._auth(scope, info)
        await self._check_upload_allowed(auth)

        error = (self.adapter.validate_filename if hasattr(self.adapter, "validate_filename")
                 else validate_filename)(filename)
        if error:
            raise ParseError(INVALID_FILE_NAME, error)
        if not auth.master:
            self._check_extension(filename, content_type)

        metadata: Any = {}
        tags: Any = {}
        directory: Any = None
        if streaming:
            directory = headers.get("x-parse-file-directory")
            metadata = _header_json(headers, "x-parse-file-metadata", "X-Parse-File-Metadata", {})
            tags = _header_json(headers, "x-parse-file-tags", "X-Parse-File-Tags", {})
        elif isinstance(file_data, dict):
            metadata = file_data.get("metadata") or {}
            tags = file_data.get("tags") or {}
            directory = file_data.get("directory")
        if directory is not None:
            if not auth.master:
                raise ParseError(errors.OPERATION_FORBIDDEN, "Directory can only be set using the Master Key.")
            _validate_directory(directory)

        if streaming:
            length = headers.get("content-length")
            if length and length.isdigit() and int(length) > limit:
                raise ParseError(FILE_SAVE_ERROR, f"File size exceeds maximum allowed: {limit} bytes.")
        elif not raw:
            raise ParseError(FILE_SAVE_ERROR, "Invalid file upload.")
        _check_denylist(metadata)
        _check_denylist(tags)
        if streaming:
            try:
                raw = await read_body(receive, limit)
            except BodyTooLarge:
                raise ParseError(FILE_SAVE_ERROR, f"File size exceeds maximum allowed: {limit} bytes.") from None

        length_header = headers.get("content-length")
        cloud_file = CloudFile(filename, raw, content_type, metadata if isinstance(metadata, dict) else {},
                               tags if isinstance(tags, dict) else {}, directory)
        if self.cloud is not None:  # Cloud Code: beforeSaveFile may change, refuse or replace the file
            cloud_file = await self.cloud.file_trigger(
                self.rest, auth, BEFORE_SAVE, cloud_file, file_size=len(raw),
                content_length=int(length_header) if length_header and length_header.isdigit() else None)
        if cloud_file.url is None:
            name, location = await self._store(scope, root, cloud_file)
            cloud_file.name, cloud_file.url = name, location
        if self.cloud is not None:
            await self.cloud.file_trigger(self.rest, auth, AFTER_SAVE, cloud_file,
                                          file_size=len(cloud_file.data) if cloud_file.data is not None else None)
        location = cloud_file.url or ""
        return Response.json({"url": location, "name": cloud_file.name}, 201, [(b"location", location.encode())])

    async def _store(self, scope: dict[str, Any], root: str, file: CloudFile) -> tuple[str, str]:
        """Write an upload (as a beforeSaveFile trigger left it); its stored name and URL."""
        error = getattr(self.adapter, "validate_filename", validate_filename)(file.name)
        if error:
            raise ParseError(INVALID_FILE_NAME, error)
        if not isinstance(file.metadata, dict) or not isinstance(file.tags, dict):
            raise ParseError(FILE_SAVE_ERROR, "a file's metadata and tags must be objects")
        if file.directory is not None:
            _validate_directory(file.directory)
        options: dict[str, Any] = {"metadata": file.metadata}
        if file.tags:
            options["tags"] = file.tags
        name, stored_type = self.stored_name(file.name, file.content_type, file.directory)
        location = self.adapter.get_file_location(self.config(scope, root), name)
        try:
            await self.adapter.create_file(name, bytes(file.data or b""), stored_type, options)
        except Exception:  # noqa: BLE001 - any adapter failure is parse-server's 130
            log.exception("could not store file %s", name)
            raise ParseError(FILE_SAVE_ERROR, f"Could not store file: {file.name}.") from None
        return name, location

    def stored_name(self, filename: str, content_type: str | None, directory: str | None = None
                    ) -> tuple[str, str | None]:
        """``FilesController.createFile``: add an extension from the content type, or take the content type
        from the extension; then the ``<32 hex>_`` prefix (unless preserveFileName) and the directory."""
        if not extension_of(filename):
            ext = extension_for_type(content_type)
            if ext:
                filename = filename + ("" if filename.endswith(".") else ".") + ext
        else:
            content_type = type_for_name(filename) or content_type
        if not self.options.preserve_file_name:
            filename = secrets.token_hex(16) + "_" + filename
        if directory:
            filename = directory + "/" + filename
        return filename, content_type

    def _upload_size_override(self, scope: dict[str, Any], headers: dict[str, str], value: str) -> int:
        """``X-Parse-File-Max-Upload-Size``: master key only."""
        if headers.get("x-parse-application-id") != self.options.app_id:
            raise _forbidden()
        client = scope.get("client")
        if headers.get("x-parse-master-key") != self.options.master_key or not self.keys.ip_allowed(
                client[0] if client else None):
            raise _forbidden()
        try:
            return parse_size(value)
        except ValueError:
            raise ParseError(FILE_SAVE_ERROR, f"Invalid maxUploadSize override value: {value}") from None

    # --- GET /files/:appId/*name -----------------------------------------------------------------------
    async def _download_auth(self, scope: dict[str, Any]) -> None:
        """A session token on a download is still checked (209 when invalid), as parse-server does."""
        info = read_headers(scope.get("headers", []))
        if info.session_token:
            await self._resolve_session(Auth(session_token=info.session_token))

    async def download(self, scope: dict[str, Any], app_id: str, name: str) -> Response:
        if app_id != self.options.app_id:
            raise _forbidden()
        await self._download_auth(scope)
        not_found = Response(404, b"File not found.", b"text/plain; charset=utf-8")
        headers = [(b"x-content-type-options", b"nosniff")]
        range_header = _headers(scope).get("range")
        try:
            stat = await self.adapter.stat(name)
            content_type = type_for_name(name) or stat.content_type or "application/octet-stream"
            ctype = _with_charset(content_type).encode("latin-1", "replace")
            span = _parse_range(range_header, stat.length) if range_header else None
            if span == "unsatisfiable":
                return Response(416, b"", None, [*headers, (b"content-range", f"bytes */{stat.length}".encode())])
        except FileNotFound:
            return not_found
        except Exception:  # noqa: BLE001 - parse-server answers any read failure with 404
            log.exception("could not read file %s", name)
            return not_found
        # the bytes are streamed in the adapters' chunks, never held whole in memory
        if span is None:
            return Response(200, None, ctype, headers, stream=self.adapter.get_file_range(name, 0, stat.length),
                            stream_length=stat.length)
        start, end = span
        headers += [(b"accept-ranges", b"bytes"),
                    (b"content-range", f"bytes {start}-{end - 1}/{stat.length}".encode())]
        return Response(206, None, ctype, headers, stream=self.adapter.get_file_range(name, start, end),
                        stream_length=end - start)

    async def metadata(self, scope: dict[str, Any], app_id: str, name: str) -> Response:
        if app_id != self.options.app_id:
            return Response.json({})
        await self._download_auth(scope)
        try:
            return Response.json(await self.adapter.get_metadata(name))
        except Exception:  # noqa: BLE001 - parse-server answers {} on any failure
            return Response.json({})

    # --- DELETE /files/*name ---------------------------------------------------------------------------
    async def delete(self, scope: dict[str, Any], receive: Any, name: str, root: str = "") -> Response:
        await read_body(receive, self.options.max_upload_bytes)  # drained, unused (as parse-server)
        info = read_headers(scope.get("headers", []))
        if info.app_id != self.options.app_id:
            raise unauthorized()
        auth = await self._auth(scope, info)
        if not auth.master:
            raise HTTPError(403, "Permission denied", json_content_type=False)
        cloud_file = CloudFile(name, url=self.adapter.get_file_location(self.config(scope, root), name))
        if self.cloud is not None:  # Cloud Code: beforeDeleteFile may refuse
            await self.cloud.file_trigger(self.rest, auth, BEFORE_DELETE, cloud_file)
        try:
            await self.adapter.delete_file(name)
        except Exception:  # noqa: BLE001 - parse-server answers any adapter failure with 153
            log.info("could not delete file %s", name, exc_info=True)
            raise ParseError(FILE_DELETE_ERROR, "Could not delete file.") from None
        if self.cloud is not None:
            await self.cloud.file_trigger(self.rest, auth, AFTER_DELETE, cloud_file)
        return Response(200, b"", None)


def _with_charset(content_type: str) -> str:
    """Express's ``res.set('Content-Type', ...)`` adds ``charset=utf-8`` to textual types."""
    essence = content_type.split(";", 1)[0].strip().lower()
    textual = essence.startswith("text/") or essence in ("application/json", "application/javascript")
    if textual and "charset=" not in content_type.lower():
        return f"{content_type}; charset=utf-8"
    return content_type


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _b64decode(text: str) -> bytes:
    """Node's lenient ``Buffer.from(text, 'base64')``: URL-safe letters, missing padding, junk skipped."""
    cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text.replace("-", "+").replace("_", "/").split("=", 1)[0])
    cleaned = cleaned[: len(cleaned) - (len(cleaned) % 4 == 1)]
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except binascii.Error:
        return b""


def _header_json(headers: dict[str, str], key: str, label: str, default: Any) -> Any:
    raw = headers.get(key)
    if not raw:
        return default
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ParseError(errors.INVALID_JSON, f"Invalid JSON in {label} header.")
    return parsed


def _validate_directory(directory: Any) -> None:
    def bad(message: str) -> ParseError:
        return ParseError(INVALID_FILE_NAME, message)

    if not isinstance(directory, str):
        raise bad("Directory must be a string.")
    if not directory:
        raise bad("Directory must not be empty.")
    if len(directory) > 256:
        raise bad("Directory path is too long.")
    if ".." in directory:
        raise bad('Directory must not contain "..".')
    if directory.startswith("/") or directory.endswith("/"):
        raise bad('Directory must not start or end with "/".')
    if "//" in directory:
        raise bad("Directory must not contain consecutive slashes.")
    first = directory.split("/")[0]
    if first in _RESERVED_SEGMENTS:
        raise bad(f'Directory must not start with reserved segment "{first}".')
    if not _DIRECTORY.match(directory):
        raise bad("Directory contains invalid characters.")


def _parse_range(header: str, length: int) -> tuple[int, int] | str | None:
    """The first range of ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` as ``[start, end)``; None to send the
    whole file (no usable range), ``"unsatisfiable"`` for a range that starts past the end."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        return None
    first, sep, last = spec.split(",")[0].strip().partition("-")
    first, last = first.strip(), last.strip()
    if not sep:
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(length - n, 0), length
    start = int(first)
    end = min(int(last) + 1, length) if last else length
    if last and int(last) < start:
        return None
    if start >= length:
        return "unsatisfiable"
    return start, end
