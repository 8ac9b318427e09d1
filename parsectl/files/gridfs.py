"""Files in GridFS on the MongoDB ``databaseURI``, as parse-server's ``GridFSBucketAdapter``.

The bucket is ``fs`` (``fs.files``/``fs.chunks``) in the URI's database, so files parse-server stored there
are served as they are. Metadata goes in the files document's ``metadata``; the content type is not stored
(parse-server doesn't either; the routes derive it from the name). With an ``encryptionKey`` (parse-server
passes ``fileKey``), files are AES-256-GCM encrypted exactly as parse-server encrypts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from parsectl.files.base import (
    CHUNK_SIZE,
    Cipher,
    FileNotFound,
    FilesConfig,
    FileStat,
    default_location,
    slice_chunks,
    validate_filename,
)

BUCKET_NAME = "fs"


class GridFSFilesAdapter:
    def __init__(self, database_uri: str, mongo_options: dict[str, Any] | None = None,
                 encryption_key: str | None = None, bucket_name: str = BUCKET_NAME) -> None:
        if not database_uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"filesAdapter 'gridfs' needs a mongodb:// databaseURI, not {database_uri!r}")
        self.database_uri = database_uri
        self.mongo_options = dict(mongo_options or {})
        for key in ("enableSchemaHooks", "schemaCacheTtl", "maxTimeMS"):
            self.mongo_options.pop(key, None)
        self.bucket_name = bucket_name
        self._cipher = Cipher(encryption_key) if encryption_key is not None else None
        self._client: Any = None
        self._bucket: Any = None
        self._database: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _get_bucket(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._bucket is not None and self._loop is not loop:
            # AsyncMongoClient is bound to the loop it first ran on: a new loop gets a new client
            self._client = self._bucket = self._database = None
        if self._bucket is None:
            self._loop = loop
            from gridfs import AsyncGridFSBucket
            from pymongo import AsyncMongoClient

            client: Any = AsyncMongoClient(self.database_uri, **self.mongo_options)
            database = client.get_default_database("test")  # the node driver's default database name
            self._client = client
            self._database = database
            self._bucket = AsyncGridFSBucket(database, bucket_name=self.bucket_name)
        return self._bucket

    async def _files(self, name: str) -> list[dict[str, Any]]:
        await self._get_bucket()
        files = self._database[f"{self.bucket_name}.files"]
        return await files.find({"filename": name}).sort("uploadDate", -1).to_list()

    async def _open(self, name: str) -> Any:
        from gridfs.errors import NoFile

        bucket = await self._get_bucket()
        try:
            return await bucket.open_download_stream_by_name(name)
        except NoFile:
            raise FileNotFound(name) from None

    # --- adapter --------------------------------------------------------------------------------------
    async def create_file(self, name: str, data: bytes, content_type: str | None,
                          options: dict[str, Any] | None = None) -> None:
        bucket = await self._get_bucket()
        payload = self._cipher.encrypt(data) if self._cipher else bytes(data)
        metadata = (options or {}).get("metadata")
        await bucket.upload_from_stream(name, payload, metadata=metadata if metadata is not None else None)

    async def get_file_data(self, name: str) -> bytes:
        grid_out = await self._open(name)
        data = await grid_out.read()
        return self._cipher.decrypt(data) if self._cipher else data

    async def stat(self, name: str) -> FileStat:
        if self._cipher:
            return FileStat(len(await self.get_file_data(name)))
        grid_out = await self._open(name)
        return FileStat(grid_out.length)

    async def get_file_range(self, name: str, start: int, end: int) -> AsyncIterator[bytes]:
        if self._cipher:
            async for chunk in slice_chunks(await self.get_file_data(name), start, end):
                yield chunk
            return
        grid_out = await self._open(name)
        await grid_out.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = await grid_out.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk

    async def delete_file(self, name: str) -> None:
        bucket = await self._get_bucket()
        documents = await self._files(name)
        if not documents:
            raise FileNotFound(name)
        for document in documents:
            await bucket.delete(document["_id"])

    def get_file_location(self, config: FilesConfig, name: str) -> str:
        return default_location(config, name)

    async def get_metadata(self, name: str) -> dict[str, Any]:
        documents = await self._files(name)
        if not documents:
            return {}
        return {"metadata": documents[0].get("metadata")}

    def validate_filename(self, name: str) -> str | None:
        return validate_filename(name)

    async def close(self) -> None:
        if self._client is not None:
            client, same_loop = self._client, self._loop is asyncio.get_running_loop()
            self._client = self._bucket = self._database = None
            if same_loop:
                await client.close()
