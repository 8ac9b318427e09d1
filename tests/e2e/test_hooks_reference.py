"""/hooks against node parse-server 9.10 (the reference, on PostgreSQL): the same admin requests answer the
same, and a registered function webhook is called with the same payload fields and header."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.test_hooks import Target
from tests.support.parsectl_proc import parsectl_server
from tests.support.servers import RunningServer

pytestmark = [pytest.mark.slow, pytest.mark.reference]


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    config = tmp_path_factory.mktemp("hooks-config") / "config.json"
    config.write_text(json.dumps({"webhookAllowedHosts": ["127.0.0.1"]}))
    with parsectl_server(data_dir=tmp_path_factory.mktemp("hooks-data"), extra_args=["--config", str(config)]) as srv:
        yield srv


def call(srv: RunningServer, method: str, path: str, body: Any = None, master: bool = True) -> tuple[int, Any]:
    r = httpx.request(method, srv.server_url + path, json=body, headers=srv.headers(master=master), timeout=15)
    return r.status_code, r.json()


def test_admin_answers_match(reference_server: RunningServer, ours: RunningServer, target: Target) -> None:
    tag = "h" + uuid.uuid4().hex[:8]
    ok = target.url("/ok")
    steps: list[tuple[str, str, Any, bool]] = [
        ("GET", "/hooks/functions", None, False),
        ("POST", "/hooks/functions", {"functionName": tag, "url": ok}, True),
        ("POST", "/hooks/functions", {"functionName": tag, "url": ok}, True),
        ("POST", "/hooks/functions", {"functionName": tag + "x"}, True),
        ("POST", "/hooks/functions", {}, True),
        ("GET", f"/hooks/functions/{tag}", None, True),
        ("GET", f"/hooks/functions/{tag}nope", None, True),
        ("PUT", f"/hooks/functions/{tag}", {"url": ok + "?v=2"}, True),
        ("PUT", f"/hooks/functions/{tag}nope", {"url": ok}, True),
        ("PUT", f"/hooks/functions/{tag}", {}, True),
        ("POST", "/hooks/triggers", {"className": tag, "triggerName": "beforeSave", "url": ok}, True),
        ("POST", "/hooks/triggers", {"className": tag, "triggerName": "beforeSave", "url": ok}, True),
        ("POST", "/hooks/triggers", {"className": tag, "triggerName": "beforeFoo", "url": ok}, True),
        ("GET", f"/hooks/triggers/{tag}/beforeSave", None, True),
        ("GET", f"/hooks/triggers/{tag}/afterSave", None, True),
        ("PUT", f"/hooks/triggers/{tag}/afterSave", {"url": ok}, True),
        ("PUT", f"/hooks/triggers/{tag}/beforeSave", {"__op": "Delete"}, True),
        ("GET", f"/hooks/triggers/{tag}/beforeSave", None, True),
        ("PUT", f"/hooks/functions/{tag}", {"__op": "Delete"}, True),
        ("GET", f"/hooks/functions/{tag}", None, True),
    ]
    for method, path, body, master in steps:
        a = call(reference_server, method, path, body, master)
        b = call(ours, method, path, body, master)
        assert a == b, (method, path, body, a, b)


def test_function_webhook_call_matches(reference_server: RunningServer, ours: RunningServer,
                                       target: Target) -> None:
    tag = "c" + uuid.uuid4().hex[:8]
    target.answers = {f"/{tag}": {"success": {"answer": 42}}, f"/{tag}err": {"error": "nope"}}
    payloads = []
    for srv in (reference_server, ours):
        assert call(srv, "POST", "/hooks/functions", {"functionName": tag, "url": target.url(f"/{tag}")})[0] == 200
        assert call(srv, "POST", "/hooks/functions", {"functionName": tag + "err",
                                                      "url": target.url(f"/{tag}err")})[0] == 200
        assert call(srv, "POST", f"/functions/{tag}", {"x": 1}, master=False) == (200, {"result": {"answer": 42}})
        payloads.append(target.seen[-1]["body"])
        assert call(srv, "POST", f"/functions/{tag}err", {}, master=False) == (400, {"code": 141, "error": "nope"})
        for name in (tag, tag + "err"):
            call(srv, "PUT", f"/hooks/functions/{name}", {"__op": "Delete"})
    node, mine = payloads
    assert set(node) == set(mine)
    for key in ("params", "master", "isReadOnly", "functionName", "context", "ip"):
        assert node[key] == mine[key], key


def test_parsectl_reads_hooks_node_wrote(reference_server: RunningServer, pg: Any, target: Target,
                                         tmp_path: Path) -> None:
    """A hook registered through node is stored where parsectl (on the same database) finds it."""
    tag = "n" + uuid.uuid4().hex[:8]
    target.answers = {f"/{tag}": {"success": "via node's _Hooks"}}
    assert call(reference_server, "POST", "/hooks/functions", {"functionName": tag,
                                                               "url": target.url(f"/{tag}")})[0] == 200
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"webhookAllowedHosts": ["127.0.0.1"]}))
    database = reference_server.extra["database_uri"]
    try:
        with parsectl_server(database_uri=database, extra_args=["--config", str(config)]) as srv:
            assert call(srv, "GET", f"/hooks/functions/{tag}") == (200, {"functionName": tag,
                                                                         "url": target.url(f"/{tag}")})
            assert call(srv, "POST", f"/functions/{tag}", {}, master=False) == (200, {"result": "via node's _Hooks"})
    finally:
        call(reference_server, "PUT", f"/hooks/functions/{tag}", {"__op": "Delete"})
