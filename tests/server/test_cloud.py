"""Cloud Code in Python (parsectl.cloud): functions, validators, triggers, jobs, errors, timeouts."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parsectl.cloud import Cloud, CloudLoadError, load
from parsectl.server.config import ConfigError
from tests.server.conftest import Client, make_client

CLOUD = '''
import asyncio
import datetime
import time

from parsectl.cloud import Cloud, ParseError

cloud = Cloud(timeout=5)


@cloud.define("hello", fields={"name": str})
async def hello(request):
    return f"Hello {request.params['name']}"


@cloud.define("whoami")
def whoami(request):
    return {"user": (request.user or {}).get("username"), "master": request.master,
            "installation": request.installation_id, "ip": request.ip,
            "header": request.headers.get("x-custom"), "context": request.context}


@cloud.define("needsUser", require_user=True)
def needs_user(request):
    return "ok"


@cloud.define("needsMaster", require_master=True)
def needs_master(request):
    return "ok"


@cloud.define("validated", fields={
    "size": {"type": int, "required": True, "options": [1, 2, 3]},
    "color": {"type": str, "default": "red"},
    "even": {"type": int, "options": lambda v: v % 2 == 0, "error": "must be even"},
})
def validated(request):
    return request.params


@cloud.define("custom")
def custom(request):
    raise ParseError(209, "custom failure")


@cloud.define("boom")
def boom(request):
    raise ValueError("something broke")


@cloud.define("hangs", timeout=0.2)
async def hangs(request):
    await asyncio.sleep(5)


@cloud.define("hangsSync", timeout=0.2)
def hangs_sync(request):
    time.sleep(1)


@cloud.define("unserialisable")
def unserialisable(request):
    return {"value": object()}


@cloud.define("when")
def when(request):
    return {"at": datetime.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC), "raw": b"hi",
            "list": (1, 2)}


@cloud.define("limited", rate_limit={"requestCount": 2, "requestTimeWindow": 60000,
                                     "includeInternalRequests": True})
def limited(request):
    return "ok"


@cloud.before_save("GameScore")
def check_score(request):
    obj = request.object
    if obj.get("score", 0) < 0:
        raise ParseError(142, "negative scores are not allowed")
    if obj.get("cheat"):
        raise RuntimeError("cheater")
    obj["checked"] = True
    obj.pop("secret", None)
    if request.original is not None:
        obj["previous"] = request.original.get("score")
    if request.context.get("tag"):
        obj["tag"] = request.context["tag"]


@cloud.after_save("GameScore")
async def after_score(request):
    if request.object.get("playerName") == "explode":
        raise RuntimeError("afterSave exploded")
    if request.object.get("playerName") == "log":
        await asyncio.sleep(0)
        AFTER_SAVES.append((request.object["objectId"], request.object.get("checked"),
                            request.original is not None))


AFTER_SAVES = []
DELETED = []


@cloud.before_save("Profile", fields={"level": {"type": int, "default": 1}, "name": {"required": True}})
def profile(request):
    pass


@cloud.before_delete("GameScore")
def before_delete(request):
    if request.object.get("locked"):
        raise ParseError(119, "locked scores cannot be deleted")


@cloud.after_delete("GameScore")
def after_delete(request):
    DELETED.append(request.object["objectId"])


@cloud.before_find("Item")
def only_visible(request):
    request.query.equal_to("visible", True)
    if request.is_get:
        return
    request.query.limit = min(request.query.limit, 2)


@cloud.after_find("Item")
def add_marker(request):
    return [{**o, "marked": True} for o in request.objects]


@cloud.before_login()
def before_login(request):
    if request.object.get("username") == "banned":
        raise ParseError(101, "banned user")


@cloud.after_login()
def after_login(request):
    LOGINS.append(request.object["username"])


@cloud.after_logout()
def after_logout(request):
    LOGOUTS.append(request.object["sessionToken"])


LOGINS = []
LOGOUTS = []


@cloud.job("count")
async def count_job(request):
    request.message("working")
    await asyncio.sleep(0.01)
    return f"counted {request.params.get('n')}"


@cloud.job("fails")
def failing_job(request):
    raise ValueError("job broke")
'''


@pytest.fixture
def cloud_file(tmp_path: Path) -> Path:
    path = tmp_path / "cloud" / "main.py"
    path.parent.mkdir()
    path.write_text(CLOUD)
    return path


@pytest.fixture
def client(database_uri: str, cloud_file: Path) -> Iterator[Client]:
    c = make_client(database_uri, cloud=str(cloud_file), allow_client_class_creation=True)
    yield c
    c.close()


def module(client: Client) -> Any:
    import sys

    return sys.modules[client.api.rest.cloud.cloud.functions["hello"].handler.__module__]


def call(client: Client, name: str, params: Any = None, **kwargs: Any) -> Any:
    return client.request("POST", f"/functions/{name}", json=params or {}, **kwargs)


def signup(client: Client, username: str) -> dict[str, Any]:
    r = client.request("POST", "/users", json={"username": username, "password": "pw"})
    assert r.status_code == 201, r.text
    return r.json()


# --- functions -------------------------------------------------------------------------------------------


def test_function_result(client: Client) -> None:
    r = call(client, "hello", {"name": "Ada"})
    assert r.status_code == 200
    assert r.json() == {"result": "Hello Ada"}


def test_unknown_function(client: Client) -> None:
    r = call(client, "nope")
    assert r.status_code == 400
    assert r.json() == {"code": 141, "error": 'Invalid function: "nope"'}


def test_functions_without_cloud_code(database_uri: str) -> None:
    c = make_client(database_uri)
    try:
        assert not c.api.rest.cloud.cloud.functions  # an empty registry: only webhooks could add functions
        assert call(c, "hello").json() == {"code": 141, "error": 'Invalid function: "hello"'}
    finally:
        c.close()


def test_request_object(client: Client) -> None:
    user = signup(client, "ada")
    r = call(client, "whoami", {}, headers={"X-Parse-Session-Token": user["sessionToken"],
                                            "X-Parse-Installation-Id": "inst-1", "X-Custom": "yes",
                                            "X-Parse-Cloud-Context": '{"a": 1}'})
    assert r.json()["result"] == {"user": "ada", "master": False, "installation": "inst-1", "ip": "127.0.0.1",
                                  "header": "yes", "context": {"a": 1}}
    assert call(client, "whoami", master=True).json()["result"]["master"] is True


def test_validators(client: Client) -> None:
    assert call(client, "hello").json() == {"code": 142, "error": "Validation failed. Please specify data for name."}
    assert call(client, "hello", {"name": 3}).json() == {
        "code": 142, "error": "Validation failed. Invalid type for name. Expected: string"}
    assert call(client, "needsUser").json() == {"code": 142, "error": "Validation failed. Please login to continue."}
    token = signup(client, "bob")["sessionToken"]
    assert call(client, "needsUser", headers={"X-Parse-Session-Token": token}).json() == {"result": "ok"}
    assert call(client, "needsMaster").json() == {
        "code": 142, "error": "Validation failed. Master key is required to complete this request."}
    assert call(client, "needsMaster", master=True).json() == {"result": "ok"}
    assert call(client, "validated", {"size": 2}).json() == {"result": {"size": 2, "color": "red"}}
    assert call(client, "validated", {"size": 5}).json() == {
        "code": 142, "error": "Validation failed. Invalid option for size. Expected: 1, 2, 3"}
    assert call(client, "validated", {"size": True}).json() == {
        "code": 142, "error": "Validation failed. Invalid type for size. Expected: number"}
    assert call(client, "validated", {"size": 1, "even": 3}).json() == {"code": 142, "error": "must be even"}
    assert call(client, "validated", {"size": 1, "even": 4}).json()["result"]["even"] == 4
    # the master key skips validators, as in parse-server
    assert call(client, "hello", master=True).status_code == 400  # the handler itself fails: KeyError
    assert call(client, "hello", master=True).json()["code"] == 141


def test_errors(client: Client) -> None:
    r = call(client, "custom")
    assert r.json() == {"code": 209, "error": "custom failure"}
    assert call(client, "boom").json() == {"code": 141, "error": "something broke"}
    unser = call(client, "unserialisable").json()
    assert unser["code"] == 141 and "cannot be sent as JSON" in unser["error"] and "object" in unser["error"]
    assert call(client, "when").json() == {"result": {
        "at": {"__type": "Date", "iso": "2024-01-02T03:04:05.678Z"}, "raw": {"__type": "Bytes", "base64": "aGk="},
        "list": [1, 2]}}


def test_timeouts(client: Client) -> None:
    for name in ("hangs", "hangsSync"):
        r = call(client, name)
        assert r.status_code == 400
        assert r.json() == {"code": 141, "error": f"Cloud function {name} timed out after 0.2 s"}


def test_rate_limit(client: Client) -> None:
    assert call(client, "limited").status_code == 200
    assert call(client, "limited").status_code == 200
    r = call(client, "limited")
    assert r.status_code == 429
    assert r.json() == {"code": 100, "error": "Too many requests."}
    assert call(client, "limited", master=True).status_code == 200


def test_functions_in_batch(client: Client) -> None:
    r = client.request("POST", "/batch", json={"requests": [
        {"method": "POST", "path": "/parse/functions/hello", "body": {"name": "X"}},
        {"method": "POST", "path": "/parse/functions/custom", "body": {}}]})
    assert r.json() == [{"success": {"result": "Hello X"}}, {"error": {"code": 209, "error": "custom failure"}}]


# --- save and delete triggers ----------------------------------------------------------------------------


def test_before_save_modifies_and_refuses(client: Client) -> None:
    r = client.request("POST", "/classes/GameScore", json={"score": 10, "secret": "x"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["checked"] is True
    object_id = created["objectId"]
    stored = client.request("GET", f"/classes/GameScore/{object_id}").json()
    assert stored["checked"] is True and stored["score"] == 10 and "secret" not in stored
    r = client.request("POST", "/classes/GameScore", json={"score": -1})
    assert r.status_code == 400
    assert r.json() == {"code": 142, "error": "negative scores are not allowed"}
    r = client.request("POST", "/classes/GameScore", json={"score": 1, "cheat": True})
    assert r.json() == {"code": 141, "error": "cheater"}
    assert client.request("GET", "/classes/GameScore").json()["results"].__len__() == 1
    # updates see the original and the merged object
    r = client.request("PUT", f"/classes/GameScore/{object_id}", json={"score": {"__op": "Increment", "amount": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["previous"] == 10
    stored = client.request("GET", f"/classes/GameScore/{object_id}").json()
    assert stored["score"] == 15 and stored["previous"] == 10
    r = client.request("PUT", f"/classes/GameScore/{object_id}", json={"score": -5})
    assert r.json()["code"] == 142
    assert client.request("GET", f"/classes/GameScore/{object_id}").json()["score"] == 15


def test_context_reaches_triggers(client: Client) -> None:
    # the JS SDK sends its keys and the context in the body
    r = client.loop.run_until_complete(client.http.post("/parse/classes/GameScore", json={
        "score": 1, "_ApplicationId": "test", "_context": {"tag": "from-body"}}))
    assert r.status_code == 201, r.text
    assert r.json()["tag"] == "from-body"
    r = client.request("POST", "/classes/GameScore", json={"score": 1},
                       headers={"X-Parse-Cloud-Context": '{"tag": "from-header"}'})
    assert r.json()["tag"] == "from-header"


def test_validator_on_trigger(client: Client) -> None:
    r = client.request("POST", "/classes/Profile", json={})
    assert r.json() == {"code": 142, "error": "Validation failed. Please specify data for name."}
    r = client.request("POST", "/classes/Profile", json={"name": "x"})
    assert r.status_code == 201
    stored = client.request("GET", f"/classes/Profile/{r.json()['objectId']}").json()
    assert stored["level"] == 1
    r = client.request("POST", "/classes/Profile", json={"name": "x", "level": "high"})
    assert r.json() == {"code": 142, "error": "Validation failed. Invalid type for level. Expected: number"}


def test_after_save_errors_logged_not_returned(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="parsectl.cloud"):
        r = client.request("POST", "/classes/GameScore", json={"score": 1, "playerName": "explode"})
    assert r.status_code == 201, r.text
    assert any("afterSave exploded" in rec.getMessage() for rec in caplog.records)
    r = client.request("POST", "/classes/GameScore", json={"score": 2, "playerName": "log"})
    object_id = r.json()["objectId"]
    client.request("PUT", f"/classes/GameScore/{object_id}", json={"score": 3})
    seen = module(client).AFTER_SAVES
    assert seen == [(object_id, True, False), (object_id, True, True)]


def test_triggers_in_batch(client: Client) -> None:
    r = client.request("POST", "/batch", json={"requests": [
        {"method": "POST", "path": "/parse/classes/GameScore", "body": {"score": 1}},
        {"method": "POST", "path": "/parse/classes/GameScore", "body": {"score": -1}},
        {"method": "POST", "path": "/parse/classes/GameScore", "body": {"score": 3, "secret": "s"}},
    ]})
    results = r.json()
    assert results[0]["success"]["checked"] is True
    assert results[1] == {"error": {"code": 142, "error": "negative scores are not allowed"}}
    assert results[2]["success"]["checked"] is True
    rows = client.request("GET", "/classes/GameScore", params={"order": "score"}).json()["results"]
    assert [(o["score"], o["checked"], "secret" in o) for o in rows] == [(1, True, False), (3, True, False)]
    object_id = rows[0]["objectId"]
    r = client.request("POST", "/batch", json={"requests": [
        {"method": "PUT", "path": f"/parse/classes/GameScore/{object_id}", "body": {"score": -3}}]})
    assert r.json() == [{"error": {"code": 142, "error": "negative scores are not allowed"}}]


def test_delete_triggers(client: Client) -> None:
    keep = client.request("POST", "/classes/GameScore", json={"score": 1, "locked": True}).json()["objectId"]
    gone = client.request("POST", "/classes/GameScore", json={"score": 2}).json()["objectId"]
    r = client.request("DELETE", f"/classes/GameScore/{keep}")
    assert r.json() == {"code": 119, "error": "locked scores cannot be deleted"}
    assert client.request("GET", f"/classes/GameScore/{keep}").status_code == 200
    assert client.request("DELETE", f"/classes/GameScore/{gone}").status_code == 200
    seen = module(client).DELETED
    assert seen == [gone]
    assert client.request("DELETE", "/classes/GameScore/missing").json()["code"] == 101


# --- find triggers -----------------------------------------------------------------------------------------


def test_find_triggers(client: Client) -> None:
    for i, visible in enumerate([True, False, True, True]):
        client.request("POST", "/classes/Item", json={"n": i, "visible": visible})
    rows = client.request("GET", "/classes/Item", params={"order": "n"}).json()["results"]
    assert [(o["n"], o["marked"]) for o in rows] == [(0, True), (2, True)]  # limited to 2 by beforeFind
    hidden = client.request("GET", "/classes/Item", params={"where": '{"n": 1}'}, master=True).json()["results"]
    assert hidden == []
    count = client.request("GET", "/classes/Item", params={"count": 1, "limit": 0}).json()
    assert count == {"results": [], "count": 3}


# --- log-in and log-out ----------------------------------------------------------------------------------


def test_login_triggers(client: Client) -> None:
    signup(client, "ada")
    signup(client, "banned")
    r = client.request("POST", "/login", json={"username": "banned", "password": "pw"})
    assert r.json() == {"code": 101, "error": "banned user"}
    r = client.request("POST", "/login", json={"username": "ada", "password": "pw"})
    assert r.status_code == 200
    token = r.json()["sessionToken"]
    seen = module(client).LOGINS
    assert seen == ["ada"]
    assert client.request("POST", "/logout", headers={"X-Parse-Session-Token": token}).status_code == 200
    seen = module(client).LOGOUTS
    assert seen == [token]


# --- jobs ----------------------------------------------------------------------------------------------------


def wait_for_job(client: Client, status_id: str) -> dict[str, Any]:
    for _ in range(200):
        row = client.request("GET", f"/classes/_JobStatus/{status_id}", master=True).json()
        if row.get("status") in ("succeeded", "failed"):
            return row
        client.loop.run_until_complete(asyncio.sleep(0.01))
    raise AssertionError("job did not finish")


def test_jobs(client: Client) -> None:
    r = client.request("POST", "/jobs/count", json={"n": 3})
    assert r.status_code == 403
    assert r.json() == {"error": "unauthorized: master key is required"}
    r = client.request("POST", "/jobs/count", json={"n": 3}, master=True)
    assert r.status_code == 200 and r.json() == {}
    status_id = r.headers["x-parse-job-status-id"]
    row = wait_for_job(client, status_id)
    assert row["jobName"] == "count" and row["source"] == "api" and row["params"] == {"n": 3}
    assert row["status"] == "succeeded" and row["message"] == "counted 3"
    # the first read that sees the job finished also sees the field its last write added (finishedAt)
    assert row["finishedAt"]["__type"] == "Date"
    r = client.request("POST", "/jobs", json={"jobName": "fails"}, master=True)
    row = wait_for_job(client, r.headers["x-parse-job-status-id"])
    assert row["status"] == "failed" and row["message"] == "job broke"
    assert client.request("POST", "/jobs/nope", master=True).json() == {"code": 141, "error": "Invalid job."}
    # _JobStatus is locked to the master key
    assert client.request("GET", f"/classes/_JobStatus/{status_id}").status_code != 200


# --- loading -------------------------------------------------------------------------------------------------


def test_load_file_and_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cloud.py").write_text(textwrap.dedent('''
        from parsectl.cloud import Cloud
        registry = Cloud()
        registry.define("f", lambda request: 1)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "f" in load("myapp.cloud").functions
    assert isinstance(load(str(pkg / "cloud.py")), Cloud)
    (tmp_path / "none.py").write_text("x = 1\n")
    with pytest.raises(CloudLoadError, match="module-level `cloud = Cloud\\(\\)`"):
        load(str(tmp_path / "none.py"))
    (tmp_path / "broken.py").write_text("raise RuntimeError('bad code')\n")
    with pytest.raises(CloudLoadError, match="bad code"):
        load(str(tmp_path / "broken.py"))
    with pytest.raises(CloudLoadError, match="does not exist"):
        load(str(tmp_path / "missing.py"))


def test_bad_cloud_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cloud"):
        make_client(f"sqlite:///{tmp_path / 'p.db'}", cloud=3)
    with pytest.raises(ConfigError, match="does not exist"):
        make_client(f"sqlite:///{tmp_path / 'p.db'}", cloud=str(tmp_path / "missing.py"))


@pytest.mark.slow
def test_serve_cloud_flag(cloud_file: Path) -> None:
    import httpx

    from tests.support.parsectl_proc import parsectl_server

    with parsectl_server(extra_args=["--cloud", str(cloud_file)]) as srv:
        r = httpx.post(f"{srv.server_url}/functions/hello", json={"name": "serve"},
                       headers={"X-Parse-Application-Id": "test"})
    assert r.json() == {"result": "Hello serve"}
