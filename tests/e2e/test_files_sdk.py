"""Parse.File with the official JS SDK (tests/js/files.js) against `parsectl serve`."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.support import JS_DIR, SetupError
from tests.support.reference import ensure_npm_ci, node_bin
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow
STORED = re.compile(r"^[0-9a-f]{32}_a\.txt$")


@pytest.fixture(scope="module")
def report(parsectl_server: RunningServer) -> dict:
    ensure_npm_ci()
    env = {**os.environ, "PARSE_SERVER_URL": parsectl_server.server_url, "PARSE_APP_ID": parsectl_server.app_id,
           "PARSE_MASTER_KEY": parsectl_server.master_key}
    proc = subprocess.run([node_bin(), str(JS_DIR / "files.js")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=JS_DIR)
    if proc.returncode != 0:
        raise SetupError(f"files.js failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n"
                         f"--- server log ---\n{parsectl_server.log_tail(3000)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ok(report: dict, name: str):
    entry = report[name]
    assert entry["ok"], f"{name} failed: {entry['error']}"
    return entry["result"]


def test_public_upload_is_refused(report: dict) -> None:
    entry = report["public_upload"]
    assert not entry["ok"]
    assert entry["error"] == {"code": 130, "message": "File upload by public is disabled."}


def test_base64_upload(report: dict, parsectl_server: RunningServer) -> None:
    saved = ok(report, "base64_upload")
    assert STORED.match(saved["name"])
    assert saved["url"] == f"{parsectl_server.server_url}/files/{parsectl_server.app_id}/{saved['name']}"


def test_file_attached_to_an_object(report: dict) -> None:
    saved = ok(report, "base64_upload")
    assert ok(report, "attach_and_query") == {"isFile": True, "name": saved["name"], "url": saved["url"]}


def test_files_in_an_array_and_an_object_keep_their_url(report: dict) -> None:
    saved = ok(report, "base64_upload")
    assert ok(report, "nested_files") == {"gallery": [saved["url"]], "cover": saved["url"]}


def test_download_by_url(report: dict) -> None:
    assert ok(report, "download") == {"status": 200, "contentType": "text/plain; charset=utf-8",
                                      "nosniff": "nosniff", "contentRange": None, "body": "hello from the sdk"}
    got = ok(report, "range")
    assert (got["status"], got["body"], got["contentRange"]) == (206, "hello", "bytes 0-4/18")


def test_buffer_upload_streams(report: dict) -> None:
    got = ok(report, "buffer_upload")
    assert re.match(r"^[0-9a-f]{32}_b\.bin$", got["name"])
    assert (got["status"], got["bytes"]) == (200, [0, 1, 2, 250, 255])


def test_destroy(report: dict) -> None:
    got = ok(report, "destroy")
    assert (got["status"], got["body"]) == (404, "File not found.")
