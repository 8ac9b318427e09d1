"""The GridFS files adapter against a MongoDB-wire server (the ``mongo_uri`` fixture: a fresh database)."""

from __future__ import annotations

import asyncio

import pytest
from pymongo import MongoClient

from parsectl.files import FileNotFound, FilesConfig, adapter_for
from parsectl.files.gridfs import GridFSFilesAdapter
from parsectl.server.config import ServerOptions

CONFIG = FilesConfig("app", "http://example.com/parse")


def make(uri: str, **kw) -> GridFSFilesAdapter:
    adapter = adapter_for(ServerOptions.from_mapping({"appId": "app", "masterKey": "m", "databaseURI": uri, **kw}))
    assert isinstance(adapter, GridFSFilesAdapter)
    return adapter


async def collect(adapter, name, start, end) -> bytes:
    return b"".join([chunk async for chunk in adapter.get_file_range(name, start, end)])


def test_create_read_range_delete(mongo_uri: str) -> None:
    adapter = make(mongo_uri)

    async def scenario() -> None:
        data = bytes(range(256)) * 2000  # several 255 KiB GridFS chunks
        await adapter.create_file("ab_a.bin", data, "application/octet-stream", {"metadata": {"k": "v"}})
        assert await adapter.get_file_data("ab_a.bin") == data
        assert (await adapter.stat("ab_a.bin")).length == len(data)
        assert await collect(adapter, "ab_a.bin", 300_000, 300_010) == data[300_000:300_010]
        assert await collect(adapter, "ab_a.bin", 5, len(data)) == data[5:]
        assert await adapter.get_metadata("ab_a.bin") == {"metadata": {"k": "v"}}
        assert await adapter.get_metadata("missing") == {}
        assert adapter.get_file_location(CONFIG, "ab_a.bin") == "http://example.com/parse/files/app/ab_a.bin"
        await adapter.delete_file("ab_a.bin")
        with pytest.raises(FileNotFound):
            await adapter.get_file_data("ab_a.bin")
        with pytest.raises(FileNotFound):
            await adapter.delete_file("ab_a.bin")
        await adapter.close()

    asyncio.run(scenario())


def test_parse_servers_bucket_layout(mongo_uri: str) -> None:
    adapter = make(mongo_uri)
    asyncio.run(adapter.create_file("ab_doc.txt", b"hello", "text/plain"))
    asyncio.run(adapter.close())
    with MongoClient(mongo_uri) as client:
        db = client.get_default_database()
        doc = db["fs.files"].find_one({"filename": "ab_doc.txt"})
        assert doc is not None and doc["length"] == 5
        chunks = list(db["fs.chunks"].find({"files_id": doc["_id"]}))
        assert b"".join(c["data"] for c in chunks) == b"hello"


def test_file_key_encrypts_as_parse_server(mongo_uri: str) -> None:
    adapter = make(mongo_uri, fileKey="secret")
    asyncio.run(adapter.create_file("ab_s.txt", b"top secret", None))
    assert asyncio.run(adapter.get_file_data("ab_s.txt")) == b"top secret"
    assert asyncio.run(collect(adapter, "ab_s.txt", 4, 10)) == b"secret"
    asyncio.run(adapter.close())
    plain = make(mongo_uri)
    stored = asyncio.run(plain._open("ab_s.txt")).length
    assert stored == len(b"top secret") + 32  # ciphertext || iv || tag
    asyncio.run(plain.close())


def test_delete_removes_every_revision(mongo_uri: str) -> None:
    adapter = make(mongo_uri)

    async def scenario() -> None:
        await adapter.create_file("ab_r.txt", b"one", None)
        await adapter.create_file("ab_r.txt", b"two", None)
        assert await adapter.get_file_data("ab_r.txt") == b"two"
        await adapter.delete_file("ab_r.txt")
        with pytest.raises(FileNotFound):
            await adapter.stat("ab_r.txt")
        await adapter.close()

    asyncio.run(scenario())
