"""In-process tests of the /files routes (parse-server 9.10 behaviour) on each database kind."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parsectl.model.errors import ParseError
from parsectl.server.auth import Auth
from tests.server.conftest import Client, make_client

NAME = re.compile(r"^[0-9a-f]{32}_a\.txt$")
BASE = "http://testserver/parse"
MakeFiles = Callable[..., Client]


@pytest.fixture
def make_files(database_uri: str, tmp_path: Path) -> Iterator[MakeFiles]:
    clients: list[Client] = []

    def make(**options: Any) -> Client:
        options.setdefault("files_adapter", {"module": "fs", "options": {"filesDirectory": str(tmp_path / "files")}})
        c = make_client(database_uri, **options)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def files(make_files: MakeFiles) -> Client:
    return make_files()


def upload(c: Client, name: str = "a.txt", data: bytes = b"hello world", *, master: bool = True,
           content_type: str = "text/plain", headers: dict[str, str] | None = None):
    return c.request("POST", f"/files/{name}", master=master, content=data,
                     headers={"Content-Type": content_type, **(headers or {})})


def raw(c: Client, method: str, path: str, **kwargs: Any):
    """A request without the client's default Parse headers."""
    return c.loop.run_until_complete(c.http.request(method, "/parse" + path, **kwargs))


def sdk_upload(c: Client, name: str, body: dict[str, Any]):
    return raw(c, "POST", f"/files/{name}", content=json.dumps(body), headers={"Content-Type": "text/plain"})


# --- upload ---------------------------------------------------------------------------------------------
def test_upload_and_download(files: Client, tmp_path: Path) -> None:
    r = upload(files)
    assert r.status_code == 201
    body = r.json()
    assert list(body) == ["url", "name"]
    assert NAME.match(body["name"])
    assert body["url"] == f"{BASE}/files/test/{body['name']}"
    assert r.headers["location"] == body["url"]
    assert (tmp_path / "files" / body["name"]).read_bytes() == b"hello world"
    # readable by others, as node's fs adapter leaves its files (another user's server may serve them)
    assert (tmp_path / "files" / body["name"]).stat().st_mode & 0o777 == 0o666 & ~_umask()

    got = raw(files, "GET", f"/files/test/{body['name']}")  # no keys needed
    assert got.status_code == 200
    assert got.content == b"hello world"
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-length"] == "11"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_binary_round_trip_and_content_type_from_name(files: Client) -> None:
    data = bytes(range(256)) * 10
    r = upload(files, "pic.png", data, content_type="application/octet-stream")
    name = r.json()["name"]
    got = raw(files, "GET", f"/files/test/{name}")
    assert got.content == data
    assert got.headers["content-type"] == "image/png"


def test_extension_added_from_content_type(files: Client) -> None:
    assert upload(files, "photo", b"\x89PNG", content_type="image/png").json()["name"].endswith("_photo.png")
    assert upload(files, "notes.", b"x", content_type="text/plain").json()["name"].endswith("_notes.txt")
    assert upload(files, "blob", b"x", content_type="application/x-unknown").json()["name"].endswith("_blob")


def test_preserve_file_name(make_files: MakeFiles) -> None:
    c = make_files(preserve_file_name=True)
    r = upload(c)
    assert r.json()["name"] == "a.txt"
    assert r.json()["url"] == f"{BASE}/files/test/a.txt"


def test_public_server_url_in_urls(make_files: MakeFiles) -> None:
    c = make_files(public_server_url="https://files.example.com/parse")
    assert upload(c).json()["url"].startswith("https://files.example.com/parse/files/test/")


def test_public_upload_refused_by_default(files: Client) -> None:
    r = upload(files, master=False)
    assert r.status_code == 400
    assert r.json() == {"code": 130, "error": "File upload by public is disabled."}


def test_public_upload_when_enabled(make_files: MakeFiles) -> None:
    c = make_files(file_upload={"enableForPublic": True})
    assert upload(c, master=False).status_code == 201


@pytest.mark.parametrize(("name", "ctype", "refused"), [
    ("page.html", "text/plain", "html"),
    ("page.HTM", "text/plain", "HTM"),
    ("x.svg", "image/svg+xml", "svg"),
    ("x.xhtml", "text/plain", "xhtml"),
    ("noext", "text/html", "html"),
    ("noext", "image/svg+xml; charset=utf-8", "svg+xml"),
    ("x.unknownext", "text/html", "html"),
    ("noext", "svg", "svg"),
])
def test_blocked_extensions(make_files: MakeFiles, name: str, ctype: str, refused: str) -> None:
    c = make_files(file_upload={"enableForPublic": True})
    r = upload(c, name, master=False, content_type=ctype)
    assert r.status_code == 400
    assert r.json() == {"code": 130, "error": f"File upload of extension {refused} is disabled."}
    assert upload(c, name, master=True, content_type=ctype).status_code == 201  # master may


def test_malformed_content_type_and_custom_extensions(make_files: MakeFiles) -> None:
    c = make_files(file_upload={"enableForPublic": True})
    r = upload(c, "noext", master=False, content_type="image")
    assert r.json() == {"code": 130, "error": "Invalid Content-Type."}
    assert upload(c, "a.json", master=False, content_type="application/vnd.api+json").status_code == 201
    only = make_files(file_upload={"enableForPublic": True, "fileExtensions": ["^(png|jpg)$"]})
    assert upload(only, "a.png", master=False).status_code == 201
    assert upload(only, "a.txt", master=False).json()["error"] == "File upload of extension txt is disabled."
    anything = make_files(file_upload={"enableForPublic": True, "fileExtensions": ["*"]})
    assert upload(anything, "a.html", master=False).status_code == 201


@pytest.mark.parametrize(("name", "message"), [
    ("x" * 129, "Filename too long."),
    (".hidden", "Filename contains invalid characters."),
    ("a$b.txt", "Filename contains invalid characters."),
    ("a%2Fb.txt", "Filename contains invalid characters."),
])
def test_bad_filenames(files: Client, name: str, message: str) -> None:
    r = upload(files, name)
    assert r.status_code == 400
    assert r.json() == {"code": 122, "error": message}


def test_filename_with_space(files: Client) -> None:
    r = upload(files, "a%20b.txt")
    assert r.json()["name"].endswith("_a b.txt")
    assert r.json()["url"].endswith("_a%20b.txt")
    assert raw(files, "GET", "/files/test/" + r.json()["name"].replace(" ", "%20")).content == b"hello world"


def test_no_filename(files: Client) -> None:
    r = files.request("POST", "/files", master=True, content=b"x")
    assert r.status_code == 400
    assert r.json() == {"code": 122, "error": "Filename not provided."}


def test_empty_body(files: Client) -> None:
    r = upload(files, data=b"")
    assert r.json() == {"code": 130, "error": "Invalid file upload."}


def test_max_upload_size(make_files: MakeFiles) -> None:
    c = make_files(max_upload_size="10b")
    assert upload(c, data=b"0123456789").status_code == 201
    r = upload(c, data=b"0123456789a")
    assert r.status_code == 413
    assert r.json() == {"error": "request entity too large"}
    r = upload(c, data=b"0123456789a", headers={"X-Parse-Upload-Mode": "stream"})
    assert r.json() == {"code": 130, "error": "File size exceeds maximum allowed: 10 bytes."}
    # a master key may raise the limit per request
    r = upload(c, data=b"0123456789abc", headers={"X-Parse-File-Max-Upload-Size": "1kb"})
    assert r.status_code == 201
    r = upload(c, data=b"x", master=False, headers={"X-Parse-File-Max-Upload-Size": "1kb"})
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})
    r = upload(c, data=b"x", headers={"X-Parse-File-Max-Upload-Size": "lots"})
    assert r.json() == {"code": 130, "error": "Invalid maxUploadSize override value: lots"}


def test_keys_required(files: Client) -> None:
    r = raw(files, "POST", "/files/a.txt", content=b"binary, not json")
    assert r.status_code == 403
    assert r.text == '{"error":"unauthorized"}'
    r = upload(files, headers={"X-Parse-Application-Id": "wrong"})
    assert r.status_code == 403


def test_client_key_checked(make_files: MakeFiles) -> None:
    c = make_files(client_key="ck", file_upload={"enableForPublic": True})
    assert upload(c, master=False).status_code == 403
    assert upload(c, master=False, headers={"X-Parse-Client-Key": "ck"}).status_code == 201


def test_invalid_session_token(files: Client) -> None:
    r = upload(files, master=False, headers={"X-Parse-Session-Token": "r:nope"})
    assert r.json() == {"code": 209, "error": "Invalid session token"}


# --- the JS SDK's base64 JSON form and stream form ---------------------------------------------------------------
def test_sdk_base64_upload(files: Client) -> None:
    body = {"base64": base64.b64encode(b"from the sdk").decode(), "fileData": {"metadata": {}, "tags": {}},
            "_ContentType": "text/plain", "_ApplicationId": "test", "_JavaScriptKey": "",
            "_ClientVersion": "js8.6.2", "_InstallationId": "iid", "_MasterKey": "test"}
    r = sdk_upload(files, "s.txt", body)
    assert r.status_code == 201
    assert raw(files, "GET", f"/files/test/{r.json()['name']}").content == b"from the sdk"


def test_sdk_base64_upload_content_type_names_the_extension(files: Client) -> None:
    body = {"base64": base64.b64encode(b"\x89PNG").decode(), "_ContentType": "image/png",
            "_ApplicationId": "test", "_MasterKey": "test"}
    assert sdk_upload(files, "pic", body).json()["name"].endswith("_pic.png")


def test_sdk_upload_is_public_without_master(files: Client) -> None:
    body = {"base64": "aGk=", "_ApplicationId": "test", "_JavaScriptKey": ""}
    assert sdk_upload(files, "s.txt", body).json() == {"code": 130, "error": "File upload by public is disabled."}
    body = {"base64": "aGk=", "_ApplicationId": "other"}
    assert sdk_upload(files, "s.txt", body).status_code == 403
    body = {"base64": 5, "_ApplicationId": "test", "_MasterKey": "test"}
    assert sdk_upload(files, "s.txt", body).status_code == 403


def test_sdk_prohibited_metadata(files: Client) -> None:
    body = {"base64": "aGk=", "fileData": {"metadata": {"constructor": 1}}, "_ApplicationId": "test",
            "_MasterKey": "test"}
    r = sdk_upload(files, "s.txt", body)
    assert r.json()["code"] == 105


def test_stream_upload_with_metadata_and_directory(files: Client) -> None:
    headers = {"X-Parse-Upload-Mode": "stream", "X-Parse-File-Directory": "user1/docs",
               "X-Parse-File-Metadata": '{"owner":"me"}'}
    r = upload(files, headers=headers)
    assert r.status_code == 201
    name = r.json()["name"]
    assert name.startswith("user1/docs/") and NAME.match(name.rsplit("/", 1)[1])
    assert r.json()["url"] == f"{BASE}/files/test/{name.replace('/', '%2F')}"
    assert raw(files, "GET", f"/files/test/{name}").content == b"hello world"
    assert files.request("DELETE", f"/files/{name}", master=True).status_code == 200


def test_stream_upload_errors(make_files: MakeFiles) -> None:
    c = make_files(file_upload={"enableForPublic": True})
    r = upload(c, master=False, headers={"X-Parse-Upload-Mode": "stream", "X-Parse-File-Directory": "d"})
    assert r.json() == {"code": 119, "error": "Directory can only be set using the Master Key."}
    r = upload(c, headers={"X-Parse-Upload-Mode": "stream", "X-Parse-File-Directory": "../up"})
    assert r.json() == {"code": 122, "error": 'Directory must not contain "..".'}
    r = upload(c, headers={"X-Parse-Upload-Mode": "stream", "X-Parse-File-Directory": "metadata/x"})
    assert r.json() == {"code": 122, "error": 'Directory must not start with reserved segment "metadata".'}
    r = upload(c, headers={"X-Parse-Upload-Mode": "stream", "X-Parse-File-Metadata": "[1]"})
    assert r.json() == {"code": 107, "error": "Invalid JSON in X-Parse-File-Metadata header."}


# --- users (sessions arrive later: their resolution is stubbed here) ---------------------------------------
def _as_user(c: Client, user: dict[str, Any] | None) -> None:
    async def resolve(auth: Auth) -> None:
        if auth.session_token != "r:good":
            raise ParseError(209, "Invalid session token")
        auth.user_id = "u1"

    async def load(user_id: str) -> dict[str, Any] | None:
        return user

    c.api.files._resolve_session = resolve
    c.api.files._load_user = load


def test_authenticated_user_may_upload(files: Client) -> None:
    _as_user(files, {"objectId": "u1", "username": "bob"})
    assert upload(files, master=False, headers={"X-Parse-Session-Token": "r:good"}).status_code == 201


def test_anonymous_user_refused_and_rules(make_files: MakeFiles) -> None:
    c = make_files()
    _as_user(c, {"objectId": "u1", "authData": {"anonymous": {"id": "x"}}})
    r = upload(c, master=False, headers={"X-Parse-Session-Token": "r:good"})
    assert r.json() == {"code": 130, "error": "File upload by anonymous user is disabled."}
    c = make_files(file_upload={"enableForAuthenticatedUser": False})
    _as_user(c, {"objectId": "u1"})
    r = upload(c, master=False, headers={"X-Parse-Session-Token": "r:good"})
    assert r.json() == {"code": 130, "error": "File upload by authenticated user is disabled."}


def test_bad_file_upload_option() -> None:
    with pytest.raises(ValueError, match="fileUpload.enableForPublic"):
        make_client("sqlite:///unused/parse.db", file_upload={"enableForPublic": "yes"})


# --- download ---------------------------------------------------------------------------------------------
def test_download_errors(files: Client) -> None:
    r = raw(files, "GET", "/files/test/nope.txt")
    assert r.status_code == 404
    assert r.text == "File not found."
    assert r.headers["content-type"].startswith("text/plain")
    r = raw(files, "GET", "/files/otherapp/nope.txt")
    assert (r.status_code, r.json()) == (403, {"error": "Permission denied"})
    r = raw(files, "GET", "/files/test/nope.txt", headers={"X-Parse-Session-Token": "r:bad"})
    assert r.json()["code"] == 209


@pytest.mark.parametrize(("spec", "status", "content", "content_range"), [
    ("bytes=0-4", 206, b"01234", "bytes 0-4/10"),
    ("bytes=5-", 206, b"56789", "bytes 5-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=0-0", 206, b"0", "bytes 0-0/10"),
    ("bytes=10-", 416, b"", "bytes */10"),
    ("bytes=abc", 200, b"0123456789", None),
    ("items=0-1", 200, b"0123456789", None),
])
def test_range_requests(files: Client, spec: str, status: int, content: bytes, content_range: str | None) -> None:
    name = upload(files, "r.txt", b"0123456789").json()["name"]
    r = raw(files, "GET", f"/files/test/{name}", headers={"Range": spec})
    assert r.status_code == status
    assert r.content == content
    assert r.headers.get("content-range") == content_range
    if status == 206:
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-length"] == str(len(content))
        assert r.headers["content-type"] == "text/plain; charset=utf-8"


def test_metadata_route(files: Client) -> None:
    name = upload(files).json()["name"]
    assert raw(files, "GET", f"/files/test/metadata/{name}").json() == {}
    assert raw(files, "GET", "/files/other/metadata/x").json() == {}


# --- delete -----------------------------------------------------------------------------------------------
def test_delete(files: Client) -> None:
    name = upload(files).json()["name"]
    r = files.request("DELETE", f"/files/{name}")
    assert r.status_code == 403
    assert r.text == '{"error":"Permission denied"}'
    assert "content-type" not in r.headers
    r = raw(files, "DELETE", f"/files/{name}")
    assert (r.status_code, r.text) == (403, '{"error":"unauthorized"}')
    r = files.request("DELETE", f"/files/{name}", master=True)
    assert r.status_code == 200
    assert r.content == b""
    assert raw(files, "GET", f"/files/test/{name}").status_code == 404
    r = files.request("DELETE", f"/files/{name}", master=True)
    assert r.status_code == 400
    assert r.json() == {"code": 153, "error": "Could not delete file."}


def test_unrouted_files_paths_fall_through(files: Client) -> None:
    assert files.request("PUT", "/files/a.txt", master=True).status_code == 404
    assert files.request("GET", "/files/test", master=True).status_code == 404


# --- File values in objects -----------------------------------------------------------------------------
def test_file_field_gets_its_url(files: Client) -> None:
    up = upload(files).json()
    r = files.request("POST", "/classes/Doc", master=True,
                      json={"file": {"__type": "File", "name": up["name"]}})
    assert r.status_code == 201
    got = files.request("GET", f"/classes/Doc/{r.json()['objectId']}", master=True).json()
    assert got["file"] == {"__type": "File", "name": up["name"], "url": up["url"]}


def test_legacy_hosted_names_with_file_key(make_files: MakeFiles) -> None:
    c = make_files(file_key="fk123")
    for name in ("tfss-1b4e28ba-2fa1-11d2-883f-0016d3cca427-photo.jpg", "ab_new.jpg"):
        c.request("POST", "/classes/Doc", master=True, json={"file": {"__type": "File", "name": name}})
    results = c.request("GET", "/classes/Doc", master=True, params={"order": "createdAt"}).json()["results"]
    urls = [r["file"]["url"] for r in results]
    assert urls == ["http://files.parsetfss.com/fk123/tfss-1b4e28ba-2fa1-11d2-883f-0016d3cca427-photo.jpg",
                    f"{BASE}/files/test/ab_new.jpg"]


def test_default_adapter_for_the_database(database_uri: str, tmp_path: Path) -> None:
    """GridFS on MongoDB, ``<dir of the SQLite file>/files`` on SQLite (PostgreSQL would use ./files)."""
    options: dict[str, Any] = {}
    if database_uri.startswith("postgres"):
        options["files_adapter"] = {"module": "fs", "options": {"filesDirectory": str(tmp_path / "pgfiles")}}
    c = make_client(database_uri, **options)
    try:
        expected = {"sqlite": "FSFilesAdapter", "postgres": "FSFilesAdapter", "mongodb": "GridFSFilesAdapter"}
        assert type(c.api.files_adapter).__name__ == expected[database_uri.split(":")[0].removesuffix("ql")]
        name = upload(c, data=b"0123456789").json()["name"]
        assert raw(c, "GET", f"/files/test/{name}").content == b"0123456789"
        assert raw(c, "GET", f"/files/test/{name}", headers={"Range": "bytes=2-3"}).content == b"23"
        if database_uri.startswith("sqlite"):
            assert (tmp_path / "files" / name).read_bytes() == b"0123456789"
        assert c.request("DELETE", f"/files/{name}", master=True).status_code == 200
        assert raw(c, "GET", f"/files/test/{name}").status_code == 404
    finally:
        c.close()
