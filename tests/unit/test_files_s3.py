"""The S3 files adapter against moto's S3 server on 127.0.0.1 (fake credentials; never real AWS)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import boto3
import httpx
import pytest

from parsectl.files import FileNotFound, FilesConfig, adapter_for
from parsectl.files.s3 import S3FilesAdapter
from parsectl.server.config import ServerOptions
from tests.support.s3 import fake_aws_env, s3_server

CONFIG = FilesConfig("app", "http://example.com/parse")
_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[str]:
    name = f"parsectl-test-{next(_buckets)}"
    with fake_aws_env():
        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
        yield name


def make(endpoint: str, bucket: str, **extra) -> S3FilesAdapter:
    opts = ServerOptions.from_mapping({"appId": "app", "masterKey": "m", "databaseURI": "sqlite:///x/parse.db",
                                       "filesAdapter": {"module": "s3", "options": {
                                           "bucket": bucket, "endpoint": endpoint, **extra}}})
    adapter = adapter_for(opts)
    assert isinstance(adapter, S3FilesAdapter)
    return adapter


async def collect(adapter, name, start, end) -> bytes:
    return b"".join([chunk async for chunk in adapter.get_file_range(name, start, end)])


def test_create_read_range_delete(s3_endpoint: str, bucket: str) -> None:
    with fake_aws_env():
        adapter = make(s3_endpoint, bucket, bucketPrefix="app/")

        async def scenario() -> None:
            await adapter.create_file("ab_a.txt", b"0123456789", "text/plain",
                                      {"metadata": {"owner": "me"}, "tags": {"kind": "doc"}})
            assert await adapter.get_file_data("ab_a.txt") == b"0123456789"
            stat = await adapter.stat("ab_a.txt")
            assert (stat.length, stat.content_type) == (10, "text/plain")
            assert await collect(adapter, "ab_a.txt", 3, 7) == b"3456"
            assert await adapter.get_metadata("ab_a.txt") == {"metadata": {"owner": "me"}}
            await adapter.delete_file("ab_a.txt")
            with pytest.raises(FileNotFound):
                await adapter.get_file_data("ab_a.txt")
            with pytest.raises(FileNotFound):
                await adapter.stat("ab_a.txt")
            with pytest.raises(FileNotFound):
                await collect(adapter, "ab_a.txt", 0, 1)
            assert await adapter.get_metadata("ab_a.txt") == {}
            await adapter.close()

        asyncio.run(scenario())
        raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        assert raw.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_objects_live_under_the_prefix_and_direct_access_serves_them(s3_endpoint: str, bucket: str) -> None:
    with fake_aws_env():
        adapter = make(s3_endpoint, bucket, bucketPrefix="pre/", directAccess=True)
        asyncio.run(adapter.create_file("x y.png", b"\x89PNG", "image/png"))
        raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys == ["pre/x y.png"]
        url = adapter.get_file_location(CONFIG, "x y.png")
        assert url == f"{s3_endpoint}/{bucket}/pre/x%20y.png"
        response = httpx.get(url)
        assert response.status_code == 200 and response.content == b"\x89PNG"
        assert response.headers["content-type"] == "image/png"
        indirect = make(s3_endpoint, bucket)
        assert indirect.get_file_location(CONFIG, "x y.png") == "http://example.com/parse/files/app/x%20y.png"


def test_big_range_is_read_in_chunks(s3_endpoint: str, bucket: str) -> None:
    with fake_aws_env():
        adapter = make(s3_endpoint, bucket)
        data = bytes(range(256)) * 4096
        asyncio.run(adapter.create_file("big.bin", data, None))
        assert asyncio.run(collect(adapter, "big.bin", 100, len(data) - 100)) == data[100:-100]


def test_missing_bucket_is_an_error_not_a_missing_file(s3_endpoint: str) -> None:
    with fake_aws_env():
        adapter = make(s3_endpoint, "no-such-bucket-here")
        with pytest.raises(Exception) as info:
            asyncio.run(adapter.get_file_data("a.txt"))
        assert not isinstance(info.value, FileNotFound)
