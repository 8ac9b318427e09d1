"""The files-adapter boundary, as parse-server's ``src/Adapters/Files/FilesAdapter.js`` defines it.

An adapter stores bytes under a name and says where clients fetch them (``get_file_location``). Names are
the stored names (``<32 hex>_a.txt``, optionally ``dir/<32 hex>_a.txt``); the routes in
:mod:`parsectl.server.files_api` pick them and check them before an adapter sees them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

_FILENAME = re.compile(r"^[_a-zA-Z0-9][a-zA-Z0-9@. ~_-]*$")
# encodeURIComponent leaves these unescaped (besides letters and digits)
_URI_COMPONENT_SAFE = "-_.!~*'()"
CHUNK_SIZE = 256 * 1024


class FileNotFound(Exception):
    """The adapter has no file by that name."""


@dataclass(frozen=True)
class FilesConfig:
    """What ``get_file_location`` needs of the server: parse-server's ``config.mount`` and app id."""

    app_id: str
    mount: str  # publicServerURL, else the URL of the request's mount point (no trailing slash)


@dataclass(frozen=True)
class FileStat:
    length: int
    content_type: str | None = None


@runtime_checkable
class FilesAdapter(Protocol):
    """Storage for uploaded files. Methods raise :class:`FileNotFound` for a missing name."""

    async def create_file(self, name: str, data: bytes, content_type: str | None,
                          options: dict[str, Any] | None = None) -> None:
        """Store ``data`` under ``name`` (replacing any file of that name); ``options`` may carry
        ``metadata`` and ``tags`` (dicts), which adapters that can keep them keep."""

    async def get_file_data(self, name: str) -> bytes: ...

    async def stat(self, name: str) -> FileStat: ...

    def get_file_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of the file, in chunks (an async generator)."""

    async def delete_file(self, name: str) -> None: ...

    def get_file_location(self, config: FilesConfig, name: str) -> str: ...

    async def get_metadata(self, name: str) -> dict[str, Any]:
        """parse-server's ``getMetadata``: ``{"metadata": {...}}`` or ``{}``."""

    def validate_filename(self, name: str) -> str | None:
        """An error message for a name this adapter can't store, else None."""

    async def close(self) -> None: ...


def validate_filename(name: str) -> str | None:
    """parse-server's default rule (``FilesAdapter.validateFilename``); the message, or None if valid."""
    if len(name) > 128:
        return "Filename too long."
    if not _FILENAME.match(name):
        return "Filename contains invalid characters."
    return None


def encode_uri_component(text: str) -> str:
    return quote(text, safe=_URI_COMPONENT_SAFE)


def default_location(config: FilesConfig, name: str) -> str:
    """``<mount>/files/<appId>/<encodeURIComponent(name)>`` (GridFS and filesystem adapters)."""
    return f"{config.mount}/files/{config.app_id}/{encode_uri_component(name)}"


class Cipher:
    """parse-server's at-rest encryption of files (``encryptionKey``; ``fileKey`` for GridFS).

    AES-256-GCM with the key ``base64(sha256(key))[:32]``, a 16-byte IV, stored as
    ``ciphertext || iv || authTag`` — so files written by either server read in the other.
    """

    def __init__(self, key: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        derived = base64.b64encode(hashlib.sha256(str(key).encode()).digest())[:32]
        self._aead = AESGCM(derived)

    def encrypt(self, data: bytes) -> bytes:
        iv = os.urandom(16)
        sealed = self._aead.encrypt(iv, data, None)
        return sealed[:-16] + iv + sealed[-16:]

    def decrypt(self, data: bytes) -> bytes:
        if len(data) < 32:
            raise ValueError("encrypted file is too short")
        ciphertext, iv, tag = data[:-32], data[-32:-16], data[-16:]
        return self._aead.decrypt(iv, ciphertext + tag, None)


async def slice_chunks(data: bytes, start: int, end: int) -> AsyncIterator[bytes]:
    for offset in range(start, end, CHUNK_SIZE):
        yield data[offset:min(offset + CHUNK_SIZE, end)]


def check_options(module: str, options: Any, allowed: set[str]) -> dict[str, Any]:
    """The adapter's options as a dict; ValueError naming any unknown option."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(f"filesAdapter 'options' for {module!r} must be an object")
    for key in options:
        if key not in allowed:
            raise ValueError(f"filesAdapter option {key!r} is not known to the {module!r} adapter "
                             f"(known: {', '.join(sorted(allowed))})")
    return dict(options)
