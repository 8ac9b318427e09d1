"""Webhooks (/hooks): admin API as parse-server 9.10, calls to a real HTTP server on 127.0.0.1, the egress
policy (webhookAllowedHosts), timeouts, restarts and several workers, on SQLite, PostgreSQL and MongoDB."""

from __future__ import annotations

import http.server
import json
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parsectl.cloud import webhooks as webhooks_module
from tests.server.conftest import Client, make_client

LOOPBACK = ["127.0.0.1"]


class Target:
    """A webhook endpoint: answers per path, records what it receives."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answers: dict[str, Any] = {}
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.headers.get("transfer-encoding", "").lower() == "chunked":  # node sends chunks
                    raw = b""
                    while size := int(self.rfile.readline().strip(), 16):
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                target.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": json.loads(raw or b"null")})
                answer = target.answers.get(self.path, {"success": None})
                if callable(answer):
                    answer = answer(target.seen[-1]["body"])
                status, body, headers = 200, answer, {}
                if isinstance(answer, tuple):
                    status, body, headers = answer
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture
def hooks(database_uri: str) -> Iterator[Client]:
    c = make_client(database_uri, webhook_allowed_hosts=LOOPBACK, webhook_key="hook-secret", webhook_timeout=2)
    yield c
    c.close()


def post(c: Client, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
    r = c.request("POST", path, json=body, **kw)
    return r.status_code, r.json()


def put(c: Client, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
    r = c.request("PUT", path, json=body, **kw)
    return r.status_code, r.json()


def get(c: Client, path: str, **kw: Any) -> tuple[int, Any]:
    r = c.request("GET", path, **kw)
    return r.status_code, r.json()


def test_admin_api_as_parse_server(hooks: Client, target: Target) -> None:
    ok, bs = target.url("/ok"), target.url("/bs")
    assert get(hooks, "/hooks/functions") == (403, {"error": "Permission denied"})
    assert post(hooks, "/hooks/functions", {"functionName": "f", "url": ok}) == (403, {"error": "Permission denied"})
    assert get(hooks, "/hooks/functions", master=True) == (200, [])
    assert get(hooks, "/hooks/triggers", master=True) == (200, [])
    assert post(hooks, "/hooks/functions", {"functionName": "f1", "url": ok}, master=True) == (
        200, {"functionName": "f1", "url": ok})
    assert post(hooks, "/hooks/functions", {"functionName": "f1", "url": ok}, master=True) == (
        400, {"code": 143, "error": "function name: f1 already exists"})
    invalid = (400, {"code": 143, "error": "invalid hook declaration"})
    for body in ({"functionName": "f2"}, {"url": ok}, {}, {"className": "Game", "url": bs},
                 {"className": "Game", "triggerName": "beforeFoo", "url": bs}, {"functionName": "f3", "url": 5}):
        assert post(hooks, "/hooks/functions", body, master=True) == invalid, body
    assert post(hooks, "/hooks/triggers", {"className": "Game", "triggerName": "beforeSave", "url": bs},
                master=True) == (200, {"className": "Game", "triggerName": "beforeSave", "url": bs})
    assert post(hooks, "/hooks/triggers", {"className": "Game", "triggerName": "beforeSave", "url": bs},
                master=True) == (400, {"code": 143, "error": "class Game already has trigger beforeSave"})
    assert get(hooks, "/hooks/functions", master=True) == (200, [{"functionName": "f1", "url": ok}])
    assert get(hooks, "/hooks/functions/f1", master=True) == (200, {"functionName": "f1", "url": ok})
    assert get(hooks, "/hooks/functions/nope", master=True) == (
        400, {"code": 143, "error": "no function named: nope is defined"})
    assert get(hooks, "/hooks/triggers", master=True) == (
        200, [{"className": "Game", "triggerName": "beforeSave", "url": bs}])
    assert get(hooks, "/hooks/triggers/Game/beforeSave", master=True) == (
        200, {"className": "Game", "triggerName": "beforeSave", "url": bs})
    assert get(hooks, "/hooks/triggers/Game/afterSave", master=True) == (
        400, {"code": 143, "error": "class Game does not exist"})
    assert put(hooks, "/hooks/functions/f1", {"url": ok + "?v=2"}, master=True) == (
        200, {"functionName": "f1", "url": ok + "?v=2"})
    assert put(hooks, "/hooks/functions/nope", {"url": ok}, master=True) == (
        400, {"code": 143, "error": "no function named: nope is defined"})
    assert put(hooks, "/hooks/functions/f1", {}, master=True) == invalid
    assert put(hooks, "/hooks/triggers/Game/afterDelete", {"url": ok}, master=True) == (
        400, {"code": 143, "error": "class Game does not exist"})
    assert put(hooks, "/hooks/functions/f1", {"__op": "Delete"}, master=True) == (200, {})
    assert put(hooks, "/hooks/functions/nope", {"__op": "Delete"}, master=True) == (200, {})
    assert put(hooks, "/hooks/triggers/Game/beforeSave", {"__op": "Delete"}, master=True) == (200, {})
    assert get(hooks, "/hooks/functions", master=True) == (200, [])
    assert get(hooks, "/hooks/triggers", master=True) == (200, [])
    assert get(hooks, "/serverInfo", master=True)[1]["features"]["hooks"] == {
        "create": True, "read": True, "update": True, "delete": True}


def test_function_webhook_payload_and_answers(hooks: Client, target: Target) -> None:
    target.answers = {"/ok": {"success": {"hi": 1}}, "/err": {"error": "boom"},
                      "/errobj": {"error": {"code": 137, "error": "dup"}}, "/bad": b"not json",
                      "/500": (500, {"error": "server broke"}, {}),
                      "/redirect": (302, b"", {"location": target.url("/ok")})}
    for name in target.answers:
        assert post(hooks, "/hooks/functions", {"functionName": "f" + name[1:], "url": target.url(name)},
                    master=True)[0] == 200
    user = post(hooks, "/users", {"username": "ada", "password": "pw"})[1]
    status, body = post(hooks, "/functions/fok", {"a": 1}, headers={
        "X-Parse-Session-Token": user["sessionToken"], "X-Parse-Cloud-Context": '{"k": 1}'})
    assert (status, body) == (200, {"result": {"hi": 1}})
    sent = target.seen[-1]
    assert sent["path"] == "/ok"
    assert sent["headers"]["x-parse-webhook-key"] == "hook-secret"
    assert sent["headers"]["content-type"] == "application/json"
    payload = sent["body"]
    assert payload["params"] == {"a": 1} and payload["functionName"] == "fok"
    assert payload["master"] is False and payload["isReadOnly"] is False
    assert payload["user"]["username"] == "ada" and payload["user"]["sessionToken"] == user["sessionToken"]
    assert payload["user"]["objectId"] == user["objectId"]
    assert payload["context"] == {"k": 1} and payload["ip"] == "127.0.0.1"
    assert payload["headers"]["x-parse-session-token"] == user["sessionToken"]
    assert post(hooks, "/functions/fok", {}, master=True)[1] == {"result": {"hi": 1}}
    assert target.seen[-1]["body"]["master"] is True and "user" not in target.seen[-1]["body"]
    assert post(hooks, "/functions/ferr", {}) == (400, {"code": 141, "error": "boom"})
    assert post(hooks, "/functions/ferrobj", {}) == (400, {"code": 141, "error": "dup"})
    assert post(hooks, "/functions/fbad", {}) == (400, {"code": 141, "error": "Malformed response"})
    assert post(hooks, "/functions/f500", {}) == (400, {"code": 141, "error": "the webhook answered with HTTP 500"})
    count = len(target.seen)
    status, body = post(hooks, "/functions/fredirect", {})
    assert status == 400 and body["code"] == 141 and "redirect (302), which is not followed" in body["error"]
    assert len(target.seen) == count + 1  # the redirect target was not called
    # a deleted webhook is gone at once
    put(hooks, "/hooks/functions/fok", {"__op": "Delete"}, master=True)
    assert post(hooks, "/functions/fok", {}) == (400, {"code": 141, "error": 'Invalid function: "fok"'})


def test_trigger_webhooks(hooks: Client, target: Target) -> None:
    def before_save(body: dict[str, Any]) -> dict[str, Any]:
        obj = dict(body["object"])
        if obj.get("score", 0) < 0:
            return {"error": "no negative scores"}
        obj["checked"] = True
        obj["createdAt"] = "ignored"
        return {"success": obj}

    target.answers = {"/bs": before_save, "/as": {"success": None}, "/bd": {"error": "keep it"}}
    for cls, trig, path in (("Game", "beforeSave", "/bs"), ("Game", "afterSave", "/as"),
                            ("Game", "beforeDelete", "/bd")):
        assert post(hooks, "/hooks/triggers", {"className": cls, "triggerName": trig, "url": target.url(path)},
                    master=True)[0] == 200
    status, created = post(hooks, "/classes/Game", {"score": 3}, master=True)
    assert status == 201 and created["checked"] is True
    sent = [s for s in target.seen if s["path"] == "/bs"][-1]["body"]
    assert sent["triggerName"] == "beforeSave" and sent["object"] == {"score": 3, "className": "Game"}
    assert sent["master"] is True and "original" not in sent
    after = [s for s in target.seen if s["path"] == "/as"][-1]["body"]
    assert after["triggerName"] == "afterSave" and after["object"]["objectId"] == created["objectId"]
    assert after["object"]["checked"] is True and after["object"]["className"] == "Game"
    assert post(hooks, "/classes/Game", {"score": -1}, master=True) == (400, {"code": 141, "error": "no negative scores"})
    oid = created["objectId"]
    assert put(hooks, f"/classes/Game/{oid}", {"score": 5}, master=True)[0] == 200
    update = [s for s in target.seen if s["path"] == "/bs"][-1]["body"]
    assert update["object"]["score"] == 5 and update["original"]["score"] == 3
    assert update["original"]["className"] == "Game"
    stored = get(hooks, f"/classes/Game/{oid}", master=True)[1]
    assert stored["score"] == 5 and stored["checked"] is True
    r = hooks.request("DELETE", f"/classes/Game/{oid}", master=True)
    assert (r.status_code, r.json()) == (400, {"code": 141, "error": "keep it"})
    assert get(hooks, f"/classes/Game/{oid}", master=True)[0] == 200


def test_hooks_survive_a_restart_and_reach_other_workers(database_uri: str, target: Target,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target.answers = {"/ok": {"success": "from the webhook"}}
    monkeypatch.setattr(webhooks_module, "REFRESH_SECONDS", 0.0)
    first = make_client(database_uri, webhook_allowed_hosts=LOOPBACK)
    second = make_client(database_uri, webhook_allowed_hosts=LOOPBACK)  # another worker on the same database
    try:
        assert post(second, "/functions/f", {}) == (400, {"code": 141, "error": 'Invalid function: "f"'})
        assert post(first, "/hooks/functions", {"functionName": "f", "url": target.url("/ok")}, master=True)[0] == 200
        assert post(second, "/functions/f", {}) == (200, {"result": "from the webhook"})
        put(first, "/hooks/functions/f", {"__op": "Delete"}, master=True)
        assert post(second, "/functions/f", {})[0] == 400
        post(first, "/hooks/functions", {"functionName": "g", "url": target.url("/ok")}, master=True)
    finally:
        first.close()
        second.close()
    monkeypatch.setattr(webhooks_module, "REFRESH_SECONDS", 3600.0)
    restarted = make_client(database_uri, webhook_allowed_hosts=LOOPBACK)
    try:  # loaded from _Hooks at start-up
        assert post(restarted, "/functions/g", {}) == (200, {"result": "from the webhook"})
    finally:
        restarted.close()


def test_default_policy_refuses_loopback_and_private(database_uri: str) -> None:
    c = make_client(database_uri)
    try:
        for url, why in (("http://127.0.0.1:9/x", "127.0.0.1 is a loopback address"),
                         ("http://localhost:9/x", "localhost resolves to"),
                         ("http://10.1.2.3/x", "10.1.2.3 is a private address"),
                         ("http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
                         ("http://[::1]:9/x", "::1 is a loopback address"),
                         ("http://[::ffff:127.0.0.1]/x", "loopback"),
                         ("http://0.0.0.0/x", "unspecified"),
                         ("ftp://example.com/x", "is not an http or https URL"),
                         ("http://user:pw@example.com/x", "carries credentials")):
            status, body = post(c, "/hooks/functions", {"functionName": "f", "url": url}, master=True)
            assert status == 400 and body["code"] == 143 and why in body["error"], (url, body)
        assert get(c, "/hooks/functions", master=True) == (200, [])
    finally:
        c.close()


def test_allow_list_and_timeout(database_uri: str, target: Target) -> None:
    def slow(body: Any) -> Any:
        time.sleep(1.5)
        return {"success": "late"}

    target.answers = {"/slow": slow}
    c = make_client(database_uri, webhook_allowed_hosts=["10.0.0.0/8", "127.0.0.1"], webhook_timeout=0.5)
    try:
        assert post(c, "/hooks/functions", {"functionName": "slow", "url": target.url("/slow")}, master=True)[0] == 200
        status, body = post(c, "/hooks/functions", {"functionName": "x", "url": "http://192.168.1.1/x"}, master=True)
        assert (status, body["code"]) == (400, 143) and "not in webhookAllowedHosts" in body["error"]
        # a name is allowed when every address it resolves to is listed
        assert post(c, "/hooks/functions", {"functionName": "y", "url": "http://localhost:1/x"}, master=True)[0] == 200
        started = time.monotonic()
        status, body = post(c, "/functions/slow", {})
        assert time.monotonic() - started < 1.4
        assert status == 400 and body["code"] == 141 and "0.5 s" in body["error"]
    finally:
        c.close()


def test_webhook_overrides_cloud_code(tmp_path: Path, target: Target) -> None:
    code = tmp_path / "main.py"
    code.write_text(textwrap.dedent('''
        from parsectl.cloud import Cloud
        cloud = Cloud()

        @cloud.define("who")
        def who(request):
            return "python"
    '''))
    target.answers = {"/who": {"success": "webhook"}}
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", cloud=str(code), webhook_allowed_hosts=LOOPBACK)
    try:
        assert post(c, "/functions/who", {}) == (200, {"result": "python"})
        post(c, "/hooks/functions", {"functionName": "who", "url": target.url("/who")}, master=True)
        assert post(c, "/functions/who", {}) == (200, {"result": "webhook"})
        put(c, "/hooks/functions/who", {"__op": "Delete"}, master=True)
        assert post(c, "/functions/who", {}) == (200, {"result": "python"})
    finally:
        c.close()


def test_read_only_master_key_cannot_change_hooks(tmp_path: Path, target: Target) -> None:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", read_only_master_key="ro", webhook_allowed_hosts=LOOPBACK)
    try:
        ro = {"X-Parse-Master-Key": "ro"}
        assert get(c, "/hooks/functions", headers=ro) == (200, [])
        status, body = post(c, "/hooks/functions", {"functionName": "f", "url": target.url("/x")}, headers=ro)
        assert status == 400 and body["code"] == 119
    finally:
        c.close()


def test_bad_options() -> None:
    from parsectl.server.config import ConfigError, ServerOptions

    with pytest.raises(ConfigError, match="webhookAllowedHosts"):
        ServerOptions.from_mapping({"appId": "a", "masterKey": "m", "webhookAllowedHosts": [3]})
    with pytest.raises(ConfigError, match="webhookAllowedHosts"):
        ServerOptions.from_mapping({"appId": "a", "masterKey": "m", "webhookAllowedHosts": ["10.0.0.0/99"]})
    with pytest.raises(ConfigError, match="webhookTimeout"):
        ServerOptions.from_mapping({"appId": "a", "masterKey": "m", "webhookTimeout": -1})
    opts = ServerOptions.from_mapping({"appId": "a", "masterKey": "m", "webhookAllowedHosts": "127.0.0.1, *.lan"})
    assert opts.webhook_allowed_hosts == ["127.0.0.1", "*.lan"]


def test_options_from_the_environment() -> None:
    from parsectl.server.sources import build_options, read_env

    env = {"PARSE_SERVER_WEBHOOK_KEY": "k", "PARSE_SERVER_WEBHOOK_TIMEOUT": "2.5",
           "PARSE_SERVER_WEBHOOK_ALLOWED_HOSTS": "10.0.0.0/8,hooks.lan"}
    opts = build_options({"appId": "a", "masterKey": "m", **read_env(env)})
    assert (opts.webhook_key, opts.webhook_timeout, opts.webhook_allowed_hosts) == ("k", 2.5, ["10.0.0.0/8", "hooks.lan"])


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Stand in for DNS (there is none here): the listed names resolve to the listed addresses."""
    import asyncio
    import socket

    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in answers[host]]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


def test_names_are_checked_on_every_address_and_pinned(tmp_path: Path, target: Target,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    port = target.server.server_port
    _fake_dns(monkeypatch, {"mixed.example": ["93.184.216.34", "127.0.0.1"], "hooks.example": ["127.0.0.1"],
                            "public.example": ["93.184.216.34"]})
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}")  # default policy: public addresses only
    try:
        status, body = post(c, "/hooks/functions", {"functionName": "m", "url": f"http://mixed.example:{port}/x"},
                            master=True)
        assert status == 400 and "mixed.example resolves to 127.0.0.1 is a loopback address" in body["error"]
        assert post(c, "/hooks/functions", {"functionName": "p", "url": "http://public.example/x"},
                    master=True)[0] == 200
        # the name now points somewhere private (DNS rebinding): the call is refused, nothing is sent
        _fake_dns(monkeypatch, {"public.example": ["10.0.0.7"]})
        status, body = post(c, "/functions/p", {})
        assert status == 400 and body["code"] == 141 and "10.0.0.7 is a private address" in body["error"]
    finally:
        c.close()
    target.answers = {"/pinned": {"success": "ok"}}
    c = make_client(f"sqlite:///{tmp_path / 'parse2.db'}", webhook_allowed_hosts=["127.0.0.1"])
    try:  # an allowed name: the call goes to the checked address, with the URL's Host header
        assert post(c, "/hooks/functions", {"functionName": "h", "url": f"http://hooks.example:{port}/pinned"},
                    master=True)[0] == 200
        assert post(c, "/functions/h", {}) == (200, {"result": "ok"})
        assert target.seen[-1]["headers"]["host"] == f"hooks.example:{port}"
    finally:
        c.close()
