"""Content types from names and extensions from content types, as the npm ``mime`` package (v4) gives them
to parse-server. Python's built-in table (no system files, so results don't vary by host) plus the
entries where the two differ."""

from __future__ import annotations

import mimetypes

_TABLE = mimetypes.MimeTypes(filenames=())
_TYPES = {
    "md": "text/markdown", "markdown": "text/markdown", "js": "text/javascript", "mjs": "text/javascript",
    "json": "application/json", "heic": "image/heic", "heif": "image/heif", "avif": "image/avif",
    "webp": "image/webp", "webm": "video/webm", "mkv": "video/x-matroska", "ts": "video/mp2t",
    "m4a": "audio/mp4", "opus": "audio/ogg", "flac": "audio/x-flac", "wasm": "application/wasm",
    "csv": "text/csv", "mp3": "audio/mpeg", "xml": "application/xml", "rtf": "application/rtf",
    "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf", "ico": "image/x-icon",
    "7z": "application/x-7z-compressed", "apk": "application/vnd.android.package-archive",
    "bin": "application/octet-stream", "svgz": "image/svg+xml",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_EXTENSIONS = {
    "text/plain": "txt", "image/jpeg": "jpg", "audio/mpeg": "mpga", "application/octet-stream": "bin",
    "text/javascript": "js", "application/javascript": "js", "video/mp4": "mp4", "application/xml": "xml",
    "text/xml": "xml", "image/svg+xml": "svg", "text/markdown": "md", "text/html": "html", "image/webp": "webp",
    "application/json": "json", "text/csv": "csv", "image/png": "png", "image/gif": "gif",
    "application/pdf": "pdf", "application/zip": "zip", "video/quicktime": "mov", "audio/wav": "wav",
    "audio/x-wav": "wav", "image/tiff": "tif", "image/heic": "heic", "video/webm": "webm", "audio/ogg": "oga",
    "image/bmp": "bmp", "image/x-icon": "ico",
    **{content_type: ext for ext, content_type in _TYPES.items() if ext in ("docx", "xlsx", "pptx")},
}


def extension_of(name: str) -> str:
    """parse-server's ``Utils.getFileExtension``: the text after the last dot ('' without a dot)."""
    return name.rsplit(".", 1)[1] if "." in name else ""


def type_for_name(name: str) -> str | None:
    ext = extension_of(name).lower()
    if not ext:
        return None
    if ext in _TYPES:
        return _TYPES[ext]
    guessed, _ = _TABLE.guess_type("f." + ext, strict=False)
    return guessed


def extension_for_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    essence = content_type.split(";", 1)[0].strip().lower()
    if not essence:
        return None
    if essence in _EXTENSIONS:
        return _EXTENSIONS[essence]
    ext = _TABLE.guess_extension(essence, strict=False)
    return ext[1:] if ext else None
