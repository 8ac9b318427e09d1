"""POST /push against stand-in APNs (HTTP/2 + TLS, ES256 tokens) and FCM (OAuth2 + HTTP v1) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parsectl.server import ParseServer
from parsectl.server.config import ConfigError
from tests.server.conftest import Client, make_client
from tests.support.push_standins import (
    KEY_ID,
    P12_PASSPHRASE,
    PROJECT_ID,
    TEAM_ID,
    TOPIC,
    APNsStandIn,
    Credentials,
    FCMStandIn,
    make_credentials,
    push_option,
)


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return make_credentials(tmp_path_factory.mktemp("push-creds"))


@pytest.fixture(scope="module")
def apns_server(creds: Credentials) -> Iterator[APNsStandIn]:
    with APNsStandIn(creds) as server:
        yield server


@pytest.fixture(scope="module")
def fcm_server(creds: Credentials) -> Iterator[FCMStandIn]:
    with FCMStandIn(creds) as server:
        yield server


@pytest.fixture
def apns(apns_server: APNsStandIn) -> APNsStandIn:
    apns_server.requests.clear()
    apns_server.answers.clear()
    apns_server.rejected.clear()
    return apns_server


@pytest.fixture
def fcm(fcm_server: FCMStandIn) -> FCMStandIn:
    fcm_server.messages.clear()
    fcm_server.errors.clear()
    return fcm_server


@pytest.fixture
def push_client(database_uri: str, creds: Credentials, apns: APNsStandIn, fcm: FCMStandIn) -> Iterator[Client]:
    c = make_client(database_uri, push=push_option(creds, apns, fcm))
    yield c
    c.close()


@pytest.fixture
def sqlite_push_client(tmp_path: Path, creds: Credentials, apns: APNsStandIn, fcm: FCMStandIn) -> Iterator[Client]:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push=push_option(creds, apns, fcm))
    yield c
    c.close()


def installation(client: Client, device_type: str, token: str | None, **fields: Any) -> str:
    body: dict[str, Any] = {"deviceType": device_type, "installationId": f"inst-{token or 'none'}-{len(fields)}",
                            **fields}
    if token is not None:
        body["deviceToken"] = token
    if device_type == "ios":
        body.setdefault("appIdentifier", TOPIC)
    r = client.request("POST", "/installations", json=body)
    assert r.status_code == 201, r.text
    return r.json()["objectId"]


def push(client: Client, body: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("master", True)
    return client.request("POST", "/push", json=body, **kwargs)


def finished(client: Client, status_id: str) -> dict[str, Any]:
    client.loop.run_until_complete(client.api.push.wait())
    r = client.request("GET", f"/classes/_PushStatus/{status_id}", master=True)
    assert r.status_code == 200, r.text
    return r.json()


def test_push_by_channels_through_apns_and_fcm(push_client: Client, apns: APNsStandIn, fcm: FCMStandIn) -> None:
    installation(push_client, "ios", "a1", channels=["news"], badge=2)
    installation(push_client, "ios", "a2", channels=["sports"])
    installation(push_client, "android", "f1", channels=["news", "sports"])
    installation(push_client, "ios", None, channels=["news"])  # no token: never targeted

    r = push(push_client, {"channels": ["news"], "data": {"alert": "Hello", "sound": "ping.caf", "score": 7,
                                                          "content-available": 1, "category": "NEWS"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"result": True}
    status_id = r.headers["x-parse-push-status-id"]

    row = finished(push_client, status_id)
    assert row["status"] == "succeeded"
    assert row["numSent"] == 2 and "numFailed" not in row and "count" not in row
    assert row["sentPerType"] == {"ios": 1, "android": 1}
    assert row["source"] == "rest"
    assert json.loads(row["query"]) == {"channels": {"$in": ["news"]}}
    assert json.loads(row["payload"])["alert"] == "Hello"
    assert row["pushHash"] == hashlib.md5(b"Hello").hexdigest()
    assert row["pushTime"].endswith("Z")

    [req] = apns.requests
    assert req.device_token == "a1" and req.http_version == "2"
    assert req.jwt_header == {"alg": "ES256", "kid": KEY_ID} and req.jwt_claims["iss"] == TEAM_ID
    assert req.headers["apns-topic"] == TOPIC
    assert req.headers["apns-push-type"] == "alert" and req.headers["apns-priority"] == "10"
    assert req.payload == {"aps": {"alert": {"body": "Hello"}, "sound": "ping.caf", "content-available": 1,
                                   "category": "NEWS"}, "score": 7}
    [message] = fcm.messages
    assert message["token"] == "f1" and message["android"]["priority"] == "high"
    data = json.loads(message["android"]["data"]["data"])
    assert data == {"alert": "Hello", "sound": "ping.caf", "score": 7, "category": "NEWS"}
    assert len(message["android"]["data"]["push_id"]) == 10


def test_push_by_where_with_expiration_and_collapse(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    installation(c, "ios", "w1", appVersion="2.0")
    installation(c, "ios", "w2", appVersion="1.0")
    r = push(c, {"where": {"appVersion": "2.0"}, "expiration_time": "2031-01-01T00:00:00Z", "collapse_id": "c-1",
                 "data": {"alert": {"title": "T", "body": "B"}, "mutable-content": 1, "priority": 5}})
    assert r.status_code == 200
    row = finished(c, r.headers["x-parse-push-status-id"])
    assert row["numSent"] == 1 and row["expiry"] == 1924992000000
    [req] = apns.requests
    assert req.device_token == "w1"
    assert req.headers["apns-expiration"] == "1924992000"
    assert req.headers["apns-collapse-id"] == "c-1" and req.headers["apns-priority"] == "5"
    assert req.payload == {"aps": {"alert": {"title": "T", "body": "B"}, "mutable-content": 1}}
    assert json.loads(row["query"]) == {"appVersion": "2.0"}


def test_badge_increment_updates_installations_and_payloads(push_client: Client, apns: APNsStandIn) -> None:
    c = push_client
    one = installation(c, "ios", "b1", badge=3)
    two = installation(c, "ios", "b2")
    other = installation(c, "ios", "b3", channels=["elsewhere"], badge=9)
    r = push(c, {"where": {"deviceType": "ios", "channels": {"$ne": "elsewhere"}}, "data": {"alert": "x",
                                                                                            "badge": "Increment"}})
    assert r.status_code == 200
    row = finished(c, r.headers["x-parse-push-status-id"])
    assert row["numSent"] == 2
    badges = {i: c.request("GET", f"/installations/{i}", master=True).json().get("badge") for i in (one, two, other)}
    assert badges == {one: 4, two: 1, other: 9}
    sent = {req.device_token: req.payload["aps"]["badge"] for req in apns.requests}
    assert sent == {"b1": 4, "b2": 1}


def test_invalid_tokens_fail_and_are_cleared(push_client: Client, apns: APNsStandIn, fcm: FCMStandIn,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    c = push_client
    monkeypatch.setenv("PARSE_SERVER_CLEANUP_INVALID_INSTALLATIONS", "1")
    good = installation(c, "ios", "ok1")
    gone = installation(c, "ios", "gone1")
    bad = installation(c, "ios", "bad1")
    stale = installation(c, "android", "stale1")
    junk = installation(c, "android", "junk1")
    fine = installation(c, "android", "fine1")
    apns.answers.update({"gone1": (410, "Unregistered"), "bad1": (400, "BadDeviceToken")})
    fcm.errors.update({"stale1": "UNREGISTERED", "junk1": "INVALID_ARGUMENT"})

    r = push(c, {"where": {}, "data": {"alert": "hi"}})
    row = finished(c, r.headers["x-parse-push-status-id"])
    assert row["status"] == "succeeded"
    assert (row["numSent"], row["numFailed"]) == (2, 4)
    assert row["sentPerType"] == {"ios": 1, "android": 1}
    assert row["failedPerType"] == {"ios": 2, "android": 2}
    tokens = {i: c.request("GET", f"/installations/{i}", master=True).json().get("deviceToken")
              for i in (good, gone, bad, stale, junk, fine)}
    assert tokens == {good: "ok1", gone: None, bad: None, stale: None, junk: None, fine: "fine1"}


def test_tokens_are_kept_without_the_cleanup_variable(sqlite_push_client: Client, apns: APNsStandIn,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    c = sqlite_push_client
    monkeypatch.delenv("PARSE_SERVER_CLEANUP_INVALID_INSTALLATIONS", raising=False)
    gone = installation(c, "ios", "gone2")
    apns.answers["gone2"] = (410, "Unregistered")
    row = finished(c, push(c, {"where": {}, "data": {"alert": "x"}}).headers["x-parse-push-status-id"])
    assert row["numFailed"] == 1 and "numSent" in row and row["numSent"] == 0
    assert c.request("GET", f"/installations/{gone}", master=True).json()["deviceToken"] == "gone2"


def test_no_matching_installation_succeeds_at_once(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    row = finished(c, push(c, {"channels": ["nobody"], "data": {"alert": "x"}}).headers["x-parse-push-status-id"])
    assert row["status"] == "succeeded" and row["numSent"] == 0 and "count" not in row
    assert apns.requests == []


def test_batches_count_down(tmp_path: Path, creds: Credentials, apns: APNsStandIn, fcm: FCMStandIn) -> None:
    option = {**push_option(creds, apns, fcm), "queueOptions": {"batchSize": 2}}
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push=option)
    try:
        for n in range(5):
            installation(c, "ios", f"t{n}")
        row = finished(c, push(c, {"where": {}, "data": {"alert": "x"}}).headers["x-parse-push-status-id"])
        assert row["status"] == "succeeded" and row["numSent"] == 5 and "count" not in row
        assert sorted(r.device_token for r in apns.requests) == [f"t{n}" for n in range(5)]
        assert len({r.jwt_claims["iat"] for r in apns.requests}) == 1  # one provider token, reused
    finally:
        c.close()


def test_localized_alerts(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    installation(c, "ios", "fr1", localeIdentifier="fr-FR")
    installation(c, "ios", "en1", localeIdentifier="en-US")
    r = push(c, {"where": {}, "data": {"alert": "Hello", "alert-fr": "Bonjour"}})
    row = finished(c, r.headers["x-parse-push-status-id"])
    assert row["numSent"] == 2
    assert {q.device_token: q.payload["aps"]["alert"]["body"] for q in apns.requests} == {"fr1": "Bonjour",
                                                                                        "en1": "Hello"}
    assert all("alert-fr" not in q.payload for q in apns.requests)


def test_scheduled_push_is_recorded_not_sent(tmp_path: Path, creds: Credentials, apns: APNsStandIn,
                                             fcm: FCMStandIn) -> None:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push=push_option(creds, apns, fcm), scheduled_push=True)
    try:
        installation(c, "ios", "s1")
        r = push(c, {"where": {}, "push_time": "2031-05-01T10:00:00Z", "data": {"alert": "later"}})
        assert r.status_code == 200
        row = finished(c, r.headers["x-parse-push-status-id"])
        assert row["status"] == "scheduled" and row["pushTime"] == "2031-05-01T10:00:00.000Z"
        local = finished(c, push(c, {"where": {}, "push_time": 1934100000, "data": {"alert": "l"}})
                         .headers["x-parse-push-status-id"])
        assert local["pushTime"] == "2031-04-16T10:00:00.000"  # epoch seconds count as local time, as node
        assert apns.requests == []
        info = c.request("GET", "/serverInfo", master=True).json()["features"]["push"]
        assert info["immediatePush"] is True and info["scheduledPush"] is True
    finally:
        c.close()


def test_push_time_without_scheduled_push_sends_now(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    installation(c, "ios", "n1")
    row = finished(c, push(c, {"where": {}, "push_time": "2031-05-01T10:00:00Z", "data": {"alert": "x"}})
                   .headers["x-parse-push-status-id"])
    assert row["status"] == "succeeded" and row["pushTime"] != "2031-05-01T10:00:00.000Z"
    assert len(apns.requests) == 1


def test_expiration_interval(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    installation(c, "ios", "e1")
    row = finished(c, push(c, {"where": {}, "expiration_interval": 60, "data": {"alert": "x"}})
                   .headers["x-parse-push-status-id"])
    assert row["expiration_interval"] == 60 and isinstance(row["expiry"], int)
    assert int(apns.requests[0].headers["apns-expiration"]) == round(row["expiry"] / 1000)


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"data": {"alert": "x"}}, 115, 'Sending a push requires either "channels" or a "where" query.'),
    ({"where": {}, "channels": ["a"]}, 115, "Channels and query can not be set at the same time."),
    ({"where": {}, "expiration_time": "soon"}, 115, "soon is not valid time."),
    ({"where": {}, "expiration_time": {"a": 1}}, 115, "[object Object] is not valid time."),
    ({"where": {}, "push_time": True}, 115, "true is not valid time."),
    ({"where": {}, "expiration_interval": -5}, 115, "expiration_interval must be a number greater than 0"),
    ({"where": {}, "expiration_interval": 5, "expiration_time": 1924992000}, 115,
     "Both expiration_time and expiration_interval cannot be set"),
    ({"where": {}, "data": {"badge": "lots"}}, 115,
     "Invalid value for badge, expected number or 'Increment' or {increment: number}"),
    ({"where": "deviceType = ios"}, 107, "where must be a JSON object"),
    ([1, 2], 115, 'Sending a push requires either "channels" or a "where" query.'),
])
def test_bad_bodies(sqlite_push_client: Client, body: Any, code: int, message: str) -> None:
    r = push(sqlite_push_client, body)
    assert r.status_code == 400, r.text
    assert r.json() == {"code": code, "error": message}
    assert sqlite_push_client.request("GET", "/classes/_PushStatus", master=True).json()["results"] == []


def test_a_bad_where_fails_the_push_status(sqlite_push_client: Client) -> None:
    c = sqlite_push_client
    installation(c, "ios", "q1")
    r = push(c, {"where": {"deviceType": {"$bogus": 1}}, "data": {"alert": "x"}})
    assert r.status_code == 200  # as parse-server: the query is run after the answer
    row = finished(c, r.headers["x-parse-push-status-id"])
    direct = c.request("GET", "/installations", master=True,
                       params={"where": json.dumps({"deviceType": {"$bogus": 1}})}).json()
    assert row["status"] == "failed"
    assert row["errorMessage"] == {"code": direct["code"], "message": direct["error"]}


def test_auth(sqlite_push_client: Client, tmp_path: Path) -> None:
    r = push(sqlite_push_client, {"where": {}, "data": {"alert": "x"}}, master=False)
    assert r.status_code == 403 and r.json() == {"error": "Permission denied"}
    ro = make_client(f"sqlite:///{tmp_path / 'ro.db'}", push={"adapter": "log"}, read_only_master_key="ro")
    try:
        r = ro.request("POST", "/push", json={"where": {}}, headers={"X-Parse-Master-Key": "ro"})
        assert r.status_code == 400
        assert r.json() == {"code": 119, "error": "Permission denied"}
    finally:
        ro.close()


def test_without_push_configuration(tmp_path: Path) -> None:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}")
    try:
        r = c.request("POST", "/push", master=True, json={"where": {}, "data": {"alert": "x"}})
        assert r.status_code == 400 and r.json() == {"code": 115, "error": "Missing push configuration"}
        info = c.request("GET", "/serverInfo", master=True).json()["features"]["push"]
        assert info["immediatePush"] is False and info["scheduledPush"] is False and info["storedPushData"] is False
    finally:
        c.close()


def test_log_adapter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push={"adapter": "log"})
    try:
        installation(c, "ios", "l1")
        installation(c, "android", "l2")
        installation(c, "winphone", "l3")
        with caplog.at_level("INFO", logger="parsectl.push.log"):
            r = push(c, {"where": {}, "data": {"alert": "dev"}})
            row = finished(c, r.headers["x-parse-push-status-id"])
        assert row["numSent"] == 2 and row["sentPerType"] == {"ios": 1, "android": 1}
        logged = [rec.getMessage() for rec in caplog.records if rec.name == "parsectl.push.log"]
        assert len(logged) == 2 and any("l1" in m and '"alert":"dev"' in m for m in logged)
        info = c.request("GET", "/serverInfo", master=True).json()["features"]["push"]
        assert info["immediatePush"] is True and info["scheduledPush"] is False
    finally:
        c.close()


def test_apns_token_refresh_and_retry(creds: Credentials, apns: APNsStandIn) -> None:
    """An APNs 403 ExpiredProviderToken makes the provider sign a new token and retry once."""

    from parsectl.push.config import load

    setup = load({"ios": {"token": {"key": creds.p8_file.read_text(), "keyId": KEY_ID, "teamId": TEAM_ID},
                          "topic": TOPIC, "endpoint": apns.url, "caFile": str(creds.ca_file)}})
    token = setup.adapter.senders["ios"].providers[0].token  # type: ignore[attr-defined]
    real_clock = token.clock
    token.clock = lambda: real_clock() - 7200
    stale = token.refresh()  # signed two hours ago: APNs calls it expired ...
    token.clock = real_clock
    token._issued_at = real_clock()  # noqa: SLF001 - ... while the cache thinks it fresh
    assert token.current == stale

    results = _send(setup, {"data": {"alert": "x"}}, ["r1"])
    assert results == [{"transmitted": True, "device": {"deviceToken": "r1", "deviceType": "ios"}}]
    assert apns.rejected == ["ExpiredProviderToken"] and len(apns.requests) == 1
    assert token.current != stale


def test_provider_token_is_cached_for_50_minutes(creds: Credentials) -> None:
    from parsectl.push.tokens import ProviderToken, load_private_key

    now = [1_000_000.0]
    token = ProviderToken(load_private_key(creds.p8_file.read_bytes()), KEY_ID, TEAM_ID, clock=lambda: now[0])
    first = token.current
    now[0] += 49 * 60
    assert token.current == first
    now[0] += 60
    assert token.current != first


def test_apns_no_provider_for_other_app(sqlite_push_client: Client, apns: APNsStandIn) -> None:
    c = sqlite_push_client
    installation(c, "ios", "o1", appIdentifier="com.other.app")
    row = finished(c, push(c, {"where": {}, "data": {"alert": "x"}}).headers["x-parse-push-status-id"])
    assert row["numFailed"] == 1 and apns.requests == []


@pytest.mark.parametrize(("option", "fragment"), [
    ("yes", "option 'push' must be an object"),
    ({"adapter": "carrier-pigeon"}, "adapter"),
    ({"web": {}}, "web and Expo is not supported"),
    ({"blackberry": {}}, "push to blackberry is not supported"),
    ({"ios": {"cert": "/nonexistent/c.pem", "key": "/nonexistent/c.key", "topic": "x"}},
     "ios.cert: cannot read '/nonexistent/c.pem'"),
    ({"ios": {"pfx": "/nonexistent/apns.p12", "topic": "x"}}, "ios.pfx: cannot read"),
    ({"ios": {"key": "k.pem", "topic": "x"}}, "ios.cert: is required with key"),
    ({"ios": {"topic": "x"}}, "or a certificate"),
    ({"ios": {"token": {"key": "/nonexistent/AuthKey.p8", "keyId": "k", "teamId": "t"}, "topic": "x"}},
     "cannot read"),
    ({"ios": {"token": {"key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "keyId": "k",
                        "teamId": "t"}, "topic": "x"}}, "not a usable .p8 key"),
    ({"ios": {"token": {"keyId": "k", "teamId": "t"}, "topic": "x"}}, "token.key"),
    ({"android": {"apiKey": "legacy"}}, "needs firebaseServiceAccount"),
    ({"android": {"firebaseServiceAccount": {"project_id": "p"}}}, "has no private_key, client_email"),
    ({"android": {"firebaseServiceAccount": "/nonexistent/sa.json"}}, "cannot read"),
    ({"queueOptions": {"batchSize": 0}, "adapter": "log"}, "batchSize"),
])
def test_bad_push_option(tmp_path: Path, option: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        ParseServer(app_id="a", master_key="m", database_uri=f"sqlite:///{tmp_path / 'p.db'}", push=option)
    assert fragment in str(info.value)


def test_ios_topic_is_required(tmp_path: Path, creds: Credentials) -> None:
    with pytest.raises(ConfigError, match="topic"):
        ParseServer(app_id="a", master_key="m", database_uri=f"sqlite:///{tmp_path / 'p.db'}",
                    push={"ios": {"token": {"key": str(creds.p8_file), "keyId": "k", "teamId": "t"}}})


def test_fcm_service_account_file(tmp_path: Path, creds: Credentials, fcm: FCMStandIn) -> None:
    from tests.support.push_standins import service_account

    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account(creds, fcm.token_uri)))
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push={
        "android": {"firebaseServiceAccount": str(path), "endpoint": fcm.url, "caFile": str(creds.ca_file)}})
    try:
        installation(c, "android", "sa1")
        r = push(c, {"where": {}, "expiration_interval": 120, "data": {"alert": "a", "badge": 3}})
        row = finished(c, r.headers["x-parse-push-status-id"])
        assert row["numSent"] == 1
        [message] = fcm.messages
        assert message["android"]["ttl"] in ("119s", "120s")
        assert "badge" not in json.loads(message["android"]["data"]["data"])
        assert fcm.assertions[-1]["aud"] == fcm.token_uri and PROJECT_ID in fcm.assertions[-1]["iss"]
    finally:
        c.close()


def test_production_refusals_are_retried_on_sandbox(creds: Credentials, apns: APNsStandIn) -> None:

    from parsectl.push.config import load

    with APNsStandIn(creds) as sandbox:
        apns.answers["dev1"] = (400, "BadDeviceToken")
        token = {"key": str(creds.p8_file), "keyId": KEY_ID, "teamId": TEAM_ID}
        setup = load({"ios": [
            {"token": token, "topic": TOPIC, "production": False, "endpoint": sandbox.url, "caFile": str(creds.ca_file)},
            {"token": token, "topic": TOPIC, "production": True, "endpoint": apns.url, "caFile": str(creds.ca_file)},
        ]})

        results = _send(setup, {"data": {"alert": "x"}}, ["dev1", "prod1"])
        assert sorted(r["device"]["deviceToken"] for r in results if r["transmitted"]) == ["dev1", "prod1"]
        assert sorted(r.device_token for r in apns.requests) == ["dev1", "prod1"]  # production first
        assert [r.device_token for r in sandbox.requests] == ["dev1"]


def test_apple_devices_through_fcm(tmp_path: Path, creds: Credentials, fcm: FCMStandIn) -> None:
    from tests.support.push_standins import service_account

    account = service_account(creds, fcm.token_uri)
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}", push={
        "ios": {"firebaseServiceAccount": account, "endpoint": fcm.url, "caFile": str(creds.ca_file)}})
    try:
        installation(c, "ios", "apple-fcm-1")
        r = push(c, {"where": {}, "collapse_id": "grp", "data": {"alert": "A", "title": "T", "badge": 2,
                                                                 "custom": "v"}})
        row = finished(c, r.headers["x-parse-push-status-id"])
        assert row["sentPerType"] == {"ios": 1}
        [message] = fcm.messages
        assert message["token"] == "apple-fcm-1"
        assert message["apns"]["payload"] == {"aps": {"alert": {"body": "A", "title": "T"}, "badge": 2}, "custom": "v"}
        assert message["apns"]["headers"] == {"apns-push-type": "alert", "apns-collapse-id": "grp"}
    finally:
        c.close()


ODD_BODIES = [
    {"where": {}, "data": []}, {"where": {}, "data": None}, {"where": {}, "data": "s"},
    {"where": {}, "push_time": 1e30}, {"where": {}, "expiration_time": -1e20}, {"where": {}, "expiration_interval": 1e300},
    {"where": {}, "data": {"badge": {"__op": "Increment"}}}, {"where": {}, "data": {"badge": [1]}},
    {"where": {}, "data": {"badge": 1.5}}, {"channels": "news"}, {"channels": None}, {"channels": [{"a": 1}]},
    {"where": {"$or": "x"}}, {"where": {}, "push_time": ""}, {"where": {}, "data": {"alert": "\u0000x"}},
    {"where": {"a": {"$regex": "("}}}, {"where": {}, "data": {"alert-": "x", "title-": "y", "alert": "z"}},
    {"where": {"deviceToken": {"$inQuery": {"className": "Nope", "where": {}}}}},
    {"where": {}, "data": {"alert": {"nested": [1, {"x": None}]}, "aps": "not an object", "pushType": 5}},
]


def test_odd_bodies_never_break(sqlite_push_client: Client) -> None:
    c = sqlite_push_client
    installation(c, "ios", "odd1")
    installation(c, "android", "odd2")
    for body in ODD_BODIES:
        r = push(c, body)
        assert r.status_code in (200, 400), (body, r.status_code, r.text)
        if r.status_code == 400:
            assert set(r.json()) == {"code", "error"}
            continue
        row = finished(c, r.headers["x-parse-push-status-id"])
        assert row["status"] in ("succeeded", "failed"), (body, row)
    assert push(c, {"where": {}, "push_time": 1e30}).json()["error"] == "1e+30 is not valid time."


# --- certificate authentication (a .p12, or a PEM certificate and key) ------------------------------------------
def _cert_entries(creds: Credentials) -> dict[str, dict[str, Any]]:
    return {"pfx": {"pfx": str(creds.client_p12_file), "passphrase": P12_PASSPHRASE},
            "cert and key": {"cert": str(creds.client_cert_file), "key": creds.client_key_file.read_text()}}


@pytest.mark.parametrize("how", ["pfx", "cert and key", "token"])
def test_apns_certificate_authentication(creds: Credentials, how: str) -> None:
    """A stand-in APNs that requires a client certificate (as Apple's does for certificate authentication):
    a provider configured with the .p12 or the PEM pair is let in and sends without a provider token; one
    with only a .p8 token cannot even connect, and its device fails."""

    from parsectl.push.config import load

    auth = {"token": {"key": str(creds.p8_file), "keyId": KEY_ID, "teamId": TEAM_ID}} if how == "token" \
        else _cert_entries(creds)[how]
    with APNsStandIn(creds, client_certs=True) as apns:
        setup = load({"ios": {**auth, "topic": TOPIC, "endpoint": apns.url, "caFile": str(creds.ca_file),
                              "connectionRetryLimit": 0}})

        [result] = _send(setup, {"data": {"alert": "by certificate"}}, ["c1"])
    if how == "token":
        assert result["transmitted"] is False and apns.requests == []
        return
    assert result == {"transmitted": True, "device": {"deviceToken": "c1", "deviceType": "ios"}}
    [request] = apns.requests
    assert "authorization" not in request.headers and request.headers["apns-topic"] == TOPIC
    assert request.payload["aps"]["alert"] == {"body": "by certificate"} and request.http_version == "2"


def test_apns_certificate_problems_are_named_at_start_up(tmp_path: Path, creds: Credentials) -> None:
    def refused(entry: dict[str, Any]) -> str:
        with pytest.raises(ConfigError) as info:
            ParseServer(app_id="a", master_key="m", database_uri=f"sqlite:///{tmp_path / 'p.db'}",
                        push={"ios": {**entry, "topic": TOPIC}})
        return str(info.value)

    assert "ios.pfx: cannot be opened: a wrong (or missing) passphrase" in refused(
        {"pfx": str(creds.client_p12_file), "passphrase": "wrong"})
    assert "ios.pfx: cannot be opened" in refused({"pfx": str(creds.client_p12_file)})
    assert "ios.pfx: cannot be opened" in refused({"pfx": str(creds.p8_file), "passphrase": "x"})
    assert "ios.key: is not the certificate's private key" in refused(
        {"cert": str(creds.client_cert_file), "key": str(creds.p8_file)})
    assert "ios.cert: is not a PEM certificate" in refused(
        {"cert": str(creds.client_key_file), "key": str(creds.client_key_file)})
    # the PEM text itself works as well as a path
    ParseServer(app_id="a", master_key="m", database_uri=f"sqlite:///{tmp_path / 'q.db'}",
                push={"ios": {"cert": creds.client_cert_file.read_text(), "key": str(creds.client_key_file),
                              "topic": TOPIC}})


def test_an_expired_apns_certificate_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from parsectl.push.config import load

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Apple Push Services: com.example.old")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=35)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    with caplog.at_level("WARNING", logger="parsectl.push"):
        load({"ios": {"cert": pem, "key": key_pem, "topic": "com.example.old"}})
    [record] = [r for r in caplog.records if "expired" in r.getMessage()]
    assert "com.example.old" in record.getMessage() and str((now - datetime.timedelta(days=35)).date()) in \
        record.getMessage()


def _send(setup: Any, body: dict[str, Any], ios_tokens: list[str]) -> list[dict[str, Any]]:
    """Send ``body`` to iOS devices of the test app through a loaded ``push`` setup, then close it."""
    import asyncio

    async def go() -> Any:
        try:
            return await setup.adapter.send(body, [{"deviceToken": t, "deviceType": "ios", "appIdentifier": TOPIC}
                                                   for t in ios_tokens], "id")
        finally:
            await setup.adapter.close()

    return asyncio.run(go())
