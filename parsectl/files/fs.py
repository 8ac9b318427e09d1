"""Files in a local directory, laid out as parse-server's ``@parse/fs-files-adapter``.

Each file is ``<directory>/<encodeURIComponent(name)>``: a name with a ``dir/`` prefix stays one flat file
(``dir%2Fname``), so no name reaches outside the directory; ``.``/``..`` and empty names are refused.
Writes go to a temp file in the same directory and are renamed into place, so readers see either the
old file or the whole new one. ``encryptionKey`` encrypts at rest as the node adapter does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from parsectl.files.base import (
    CHUNK_SIZE,
    Cipher,
    FileNotFound,
    FilesConfig,
    FileStat,
    default_location,
    encode_uri_component,
    slice_chunks,
    validate_filename,
)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# a stored file's mode: what a plain open() gives (0644 under the usual umask), as node's fs adapter writes
# them, not mkstemp's 0600 (another user's server, node parse-server for one, could not read them)
FILE_MODE = 0o666 & ~_umask()


class FSFilesAdapter:
    def __init__(self, directory: str | os.PathLike[str], encryption_key: str | None = None) -> None:
        self.directory = Path(directory)
        self._cipher = Cipher(encryption_key) if encryption_key is not None else None

    # --- paths ----------------------------------------------------------------------------------------
    def path_for(self, name: str) -> Path:
        """The file's path; ValueError for a name that would not be a plain file inside the directory."""
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ValueError(f"invalid file name {name!r}")
        encoded = encode_uri_component(name)
        if encoded in (".", "..") or len(encoded.encode()) > 255:
            raise ValueError(f"invalid file name {name!r}")
        path = self.directory / encoded
        if path.parent != self.directory:  # cannot happen once "/" is encoded; belt and braces
            raise ValueError(f"invalid file name {name!r}")
        return path

    def _existing(self, name: str) -> Path:
        try:
            path = self.path_for(name)
        except ValueError:
            raise FileNotFound(name) from None
        if not path.is_file():
            raise FileNotFound(name)
        return path

    # --- adapter --------------------------------------------------------------------------------------
    async def create_file(self, name: str, data: bytes, content_type: str | None,
                          options: dict[str, Any] | None = None) -> None:
        path = self.path_for(name)
        payload = self._cipher.encrypt(data) if self._cipher else bytes(data)
        await asyncio.to_thread(self._write_atomic, path, payload)

    def _write_atomic(self, path: Path, payload: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    async def get_file_data(self, name: str) -> bytes:
        path = self._existing(name)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise FileNotFound(name) from None
        return self._cipher.decrypt(data) if self._cipher else data

    async def stat(self, name: str) -> FileStat:
        path = self._existing(name)
        if self._cipher:
            return FileStat(len(await self.get_file_data(name)))
        try:
            return FileStat(path.stat().st_size)
        except FileNotFoundError:
            raise FileNotFound(name) from None

    async def get_file_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        if self._cipher:
            async for chunk in slice_chunks(await self.get_file_data(name), start, end):
                yield chunk
            return
        path = self._existing(name)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise FileNotFound(name) from None
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = end - start
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK_SIZE, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete_file(self, name: str) -> None:
        path = self._existing(name)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            raise FileNotFound(name) from None

    def get_file_location(self, config: FilesConfig, name: str) -> str:
        return default_location(config, name)

    async def get_metadata(self, name: str) -> dict[str, Any]:
        return {}

    def validate_filename(self, name: str) -> str | None:
        return validate_filename(name)

    async def close(self) -> None:
        return None
