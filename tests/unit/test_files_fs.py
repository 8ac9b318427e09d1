"""The filesystem files adapter, the adapter factory and File urls (no network)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from pathlib import Path

import pytest

from parsectl.files import FileNotFound, FilesConfig, adapter_for, file_url, validate_filename
from parsectl.files.base import Cipher
from parsectl.files.factory import data_dir
from parsectl.files.fs import FSFilesAdapter
from parsectl.files.gridfs import GridFSFilesAdapter
from parsectl.files.s3 import S3FilesAdapter
from parsectl.server.config import ServerOptions

CONFIG = FilesConfig("app", "http://example.com/parse")


def run(coro):
    return asyncio.run(coro)


async def collect(adapter, name, start, end) -> bytes:
    return b"".join([chunk async for chunk in adapter.get_file_range(name, start, end)])


def options(**kw) -> ServerOptions:
    return ServerOptions.from_mapping({"appId": "app", "masterKey": "m", **kw})


# --- fs adapter -------------------------------------------------------------------------------------------
def test_create_read_range_delete(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path / "files")
    run(adapter.create_file("abc_a.txt", b"0123456789", "text/plain"))
    assert (tmp_path / "files" / "abc_a.txt").read_bytes() == b"0123456789"
    assert run(adapter.get_file_data("abc_a.txt")) == b"0123456789"
    assert run(adapter.stat("abc_a.txt")).length == 10
    assert run(collect(adapter, "abc_a.txt", 2, 5)) == b"234"
    run(adapter.delete_file("abc_a.txt"))
    assert not (tmp_path / "files" / "abc_a.txt").exists()
    with pytest.raises(FileNotFound):
        run(adapter.get_file_data("abc_a.txt"))
    with pytest.raises(FileNotFound):
        run(adapter.delete_file("abc_a.txt"))
    with pytest.raises(FileNotFound):
        run(adapter.stat("abc_a.txt"))


def test_range_reads_big_file_in_chunks(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path)
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    run(adapter.create_file("big.bin", data, None))
    assert run(collect(adapter, "big.bin", 1000, len(data) - 7)) == data[1000:-7]
    assert run(collect(adapter, "big.bin", 0, len(data))) == data


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path)
    run(adapter.create_file("x.txt", b"old", None))
    run(adapter.create_file("x.txt", b"new contents", None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
    assert (tmp_path / "x.txt").read_bytes() == b"new contents"


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = FSFilesAdapter(tmp_path)
    run(adapter.create_file("x.txt", b"old", None))

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr("parsectl.files.fs.os.replace", broken_replace)
    with pytest.raises(OSError):
        run(adapter.create_file("x.txt", b"new", None))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]
    assert (tmp_path / "x.txt").read_bytes() == b"old"


@pytest.mark.parametrize("name", ["..", ".", "", "a\x00b"])
def test_refuses_names_that_are_not_plain_files(tmp_path: Path, name: str) -> None:
    adapter = FSFilesAdapter(tmp_path / "files")
    with pytest.raises(ValueError):
        run(adapter.create_file(name, b"x", None))
    with pytest.raises(FileNotFound):
        run(adapter.get_file_data(name))


@pytest.mark.parametrize("name", ["../escape.txt", "../../etc/passwd", "dir/sub/x.txt", "/abs.txt"])
def test_slashes_never_leave_the_directory(tmp_path: Path, name: str) -> None:
    root = tmp_path / "files"
    adapter = FSFilesAdapter(root)
    run(adapter.create_file(name, b"x", None))
    files = list(tmp_path.rglob("*"))
    assert [p for p in files if p.is_file()] == [root / name.replace("/", "%2F")]
    assert run(adapter.get_file_data(name)) == b"x"


def test_location_is_parse_servers(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path)
    assert adapter.get_file_location(CONFIG, "ab_a b.txt") == "http://example.com/parse/files/app/ab_a%20b.txt"
    assert adapter.get_file_location(CONFIG, "d/x.txt") == "http://example.com/parse/files/app/d%2Fx.txt"


def test_encryption_round_trip_and_node_layout(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path, encryption_key="secret")
    run(adapter.create_file("e.txt", b"plain text here", None))
    stored = (tmp_path / "e.txt").read_bytes()
    assert b"plain" not in stored and len(stored) == len(b"plain text here") + 32
    assert run(adapter.get_file_data("e.txt")) == b"plain text here"
    assert run(adapter.stat("e.txt")).length == 15
    assert run(collect(adapter, "e.txt", 6, 10)) == b"text"
    # node: key = base64(sha256(key))[:32]; stored = ciphertext || iv(16) || tag(16)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = base64.b64encode(hashlib.sha256(b"secret").digest())[:32]
    ct, iv, tag = stored[:-32], stored[-32:-16], stored[-16:]
    assert AESGCM(key).decrypt(iv, ct + tag, None) == b"plain text here"
    with pytest.raises(Exception):  # noqa: B017 - wrong key fails authentication
        Cipher("other").decrypt(stored)


def test_validate_filename() -> None:
    assert validate_filename("a.txt") is None
    assert validate_filename("_a b@c~d-e.txt") is None
    assert validate_filename("x" * 129) == "Filename too long."
    assert validate_filename(".hidden") == "Filename contains invalid characters."
    assert validate_filename("a/b") == "Filename contains invalid characters."
    assert validate_filename("ä.txt") == "Filename contains invalid characters."


# --- factory ------------------------------------------------------------------------------------------
def test_default_is_fs_next_to_the_sqlite_file(tmp_path: Path) -> None:
    adapter = adapter_for(options(databaseURI=f"sqlite:///{tmp_path}/db/parse.db"))
    assert isinstance(adapter, FSFilesAdapter)
    assert adapter.directory == tmp_path / "db" / "files"
    assert data_dir("postgres://u@h/db") == Path(".")
    assert adapter_for(options(databaseURI="postgres://u@h/db")).directory == Path("files")


def test_fs_sub_directory_and_directory(tmp_path: Path) -> None:
    opts = options(databaseURI=f"sqlite:///{tmp_path}/parse.db",
                   filesAdapter={"module": "fs", "options": {"filesSubDirectory": "app1"}})
    assert adapter_for(opts).directory == tmp_path / "files" / "app1"
    opts = options(filesAdapter={"module": "@parse/fs-files-adapter", "options": {"filesDirectory": str(tmp_path)}})
    assert adapter_for(opts).directory == tmp_path


def test_default_is_gridfs_for_mongodb() -> None:
    adapter = adapter_for(options(databaseURI="mongodb://127.0.0.1:1/parse", fileKey="k"))
    assert isinstance(adapter, GridFSFilesAdapter)
    assert adapter.database_uri == "mongodb://127.0.0.1:1/parse"
    assert adapter._cipher is not None  # parse-server encrypts GridFS files with fileKey


def test_s3_options() -> None:
    adapter = adapter_for(options(filesAdapter={"module": "s3", "options": {
        "bucket": "bkt", "region": "eu-west-1", "bucketPrefix": "p/", "directAccess": True}}))
    assert isinstance(adapter, S3FilesAdapter)
    assert adapter.get_file_location(CONFIG, "a b.txt") == "https://bkt.s3.amazonaws.com/p/a%20b.txt"
    adapter.base_url = "https://cdn.example.com"
    assert adapter.get_file_location(CONFIG, "a.txt") == "https://cdn.example.com/p/a.txt"
    adapter.base_url_direct = True
    assert adapter.get_file_location(CONFIG, "a.txt") == "https://cdn.example.com/a.txt"
    adapter.direct_access = False
    assert adapter.get_file_location(CONFIG, "a.txt") == "http://example.com/parse/files/app/a.txt"


@pytest.mark.parametrize(("spec", "named"), [
    ({"module": "s3", "options": {}}, "'bucket'"),
    ({"module": "s3", "options": {"bucket": "b", "bukcetPrefix": "x"}}, "'bukcetPrefix'"),
    ({"module": "s3", "options": {"bucket": "b", "directAccess": "yes"}}, "'directAccess'"),
    ({"module": "fs", "options": {"filesSubDirectory": "../up"}}, "'filesSubDirectory'"),
    ({"module": "fs", "options": {"encryptionKey": 5}}, "'encryptionKey'"),
    ({"module": "gridfs"}, "'databaseURI'"),
    ({"module": "ftp"}, "'module'"),
    ({"module": "fs", "opts": {}}, "'opts'"),
])
def test_bad_options_name_the_option(spec: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        adapter_for(options(databaseURI="sqlite:///x/parse.db", filesAdapter=spec))


# --- File urls --------------------------------------------------------------------------------------------
def test_legacy_urls_with_file_key(tmp_path: Path) -> None:
    adapter = FSFilesAdapter(tmp_path)
    legacy = "d4f4a8d2-1c0b-4e7a-9a49-9a4c3f2d1e0b-photo.jpg"
    assert file_url(adapter, CONFIG, "fk", "tfss-abc-photo.jpg") == "http://files.parsetfss.com/fk/tfss-abc-photo.jpg"
    assert file_url(adapter, CONFIG, "fk", legacy) == f"http://files.parse.com/fk/{legacy}"
    assert file_url(adapter, CONFIG, "fk", "ab_new.jpg") == "http://example.com/parse/files/app/ab_new.jpg"
    assert file_url(adapter, CONFIG, None, "tfss-abc.jpg") == "http://example.com/parse/files/app/tfss-abc.jpg"
    assert file_url(adapter, CONFIG, "fk", "tfss-a b.jpg") == "http://files.parsetfss.com/fk/tfss-a%20b.jpg"
