"""File triggers in Python Cloud Code: beforeSaveFile, afterSaveFile, beforeDeleteFile, afterDeleteFile."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import Client, make_client

CLOUD = '''
from parsectl.cloud import Cloud, CloudFile, ParseError

cloud = Cloud()
seen = []


@cloud.before_save_file
def before_save(request):
    f = request.file
    seen.append({"trigger": request.trigger_name, "name": f.name, "size": request.file_size,
                 "length": request.content_length, "master": request.master, "ip": request.ip,
                 "user": (request.user or {}).get("username"), "type": f.content_type,
                 "metadata": dict(f.metadata), "header": request.headers.get("x-custom")})
    if f.name.startswith("bad"):
        raise ParseError(130, "no bad files")
    if f.name.startswith("boom"):
        raise ValueError("exploded")
    if f.name.startswith("existing"):
        return CloudFile("already.txt", url="https://cdn.example.com/already.txt")
    if f.name.startswith("upper"):
        f.data = f.data.upper()
        f.name = "renamed.txt"
        f.metadata["checked"] = "yes"
        f.tags["kind"] = "shout"


@cloud.after_save_file
def after_save(request):
    seen.append({"trigger": request.trigger_name, "name": request.file.name, "url": request.file.url,
                 "size": request.file_size})
    if request.file.metadata:
        seen[-1].update(metadata=request.file.metadata, tags=request.file.tags)


@cloud.before_delete_file
def before_delete(request):
    seen.append({"trigger": request.trigger_name, "name": request.file.name, "url": request.file.url})
    if "keep" in request.file.name:
        raise ParseError(153, "this one stays")


@cloud.after_delete_file
def after_delete(request):
    seen.append({"trigger": request.trigger_name, "name": request.file.name})
'''


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Client]:
    code = tmp_path / "cloud_files.py"
    code.write_text(textwrap.dedent(CLOUD))
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", cloud=str(code),
                    files_adapter={"module": "fs", "options": {"filesDirectory": str(tmp_path / "files")}})
    yield c
    c.close()


def seen(c: Client) -> list[dict[str, Any]]:
    handler = c.api.rest.cloud.cloud.triggers[("beforeSave", "@File")].handler
    return sys.modules[handler.__module__].seen


def upload(c: Client, name: str, data: bytes = b"hello", headers: dict[str, str] | None = None) -> Any:
    return c.request("POST", f"/files/{name}", master=True, content=data,
                     headers={"Content-Type": "text/plain", **(headers or {})})


def download(c: Client, name: str) -> bytes:
    return c.loop.run_until_complete(c.http.get(f"/parse/files/test/{name}")).content


def test_before_and_after_save_file(files: Client) -> None:
    r = upload(files, "a.txt", headers={"X-Custom": "hi"})
    assert r.status_code == 201
    name = r.json()["name"]
    assert name.endswith("_a.txt") and download(files, name) == b"hello"
    before, after = seen(files)[-2:]
    assert before == {"trigger": "beforeSave", "name": "a.txt", "size": 5, "length": 5, "master": True,
                      "ip": "127.0.0.1", "user": None, "type": "text/plain", "metadata": {}, "header": "hi"}
    assert after == {"trigger": "afterSave", "name": name, "url": r.json()["url"], "size": 5}


def test_before_save_file_changes_the_file(files: Client) -> None:
    r = upload(files, "upper.txt", b"quiet")
    assert r.status_code == 201
    name = r.json()["name"]
    assert name.endswith("_renamed.txt")
    assert download(files, name) == b"QUIET"
    after = seen(files)[-1]
    assert (after["name"], after["metadata"], after["tags"]) == (name, {"checked": "yes"}, {"kind": "shout"})


def test_before_save_file_refuses(files: Client) -> None:
    r = upload(files, "bad.txt")
    assert (r.status_code, r.json()) == (400, {"code": 130, "error": "no bad files"})
    r = upload(files, "boom.txt")
    assert (r.status_code, r.json()) == (400, {"code": 130, "error": "exploded"})
    assert not any(s["trigger"] == "afterSave" for s in seen(files))


def test_before_save_file_returns_a_saved_file(files: Client) -> None:
    r = upload(files, "existing.txt")
    assert r.status_code == 201
    assert r.json() == {"url": "https://cdn.example.com/already.txt", "name": "already.txt"}
    assert r.headers["location"] == "https://cdn.example.com/already.txt"
    assert seen(files)[-1] == {"trigger": "afterSave", "name": "already.txt",
                               "url": "https://cdn.example.com/already.txt", "size": None}  # unknown, as node


def test_delete_file_triggers(files: Client) -> None:
    keep = upload(files, "keep.txt").json()["name"]
    r = files.request("DELETE", f"/files/{keep}", master=True)
    assert (r.status_code, r.json()) == (400, {"code": 153, "error": "this one stays"})
    assert download(files, keep) == b"hello"
    gone = upload(files, "gone.txt").json()["name"]
    r = files.request("DELETE", f"/files/{gone}", master=True)
    assert r.status_code == 200
    assert download(files, gone) == b"File not found."
    before, after = seen(files)[-2:]
    assert before == {"trigger": "beforeDelete", "name": gone, "url": f"http://testserver/parse/files/test/{gone}"}
    assert after == {"trigger": "afterDelete", "name": gone}


def test_sdk_upload_sees_the_user(files: Client) -> None:
    user = files.request("POST", "/users", json={"username": "ada", "password": "pw"}).json()
    r = files.request("POST", "/files/u.txt", content=b"x", headers={
        "Content-Type": "text/plain", "X-Parse-Session-Token": user["sessionToken"]})
    assert r.status_code == 201
    assert [s for s in seen(files) if s["trigger"] == "beforeSave"][-1]["user"] == "ada"
