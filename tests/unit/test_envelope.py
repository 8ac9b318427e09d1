"""Key handling: headers, Basic auth, the JS SDK's body keys and the master-key IP allow-list."""

from __future__ import annotations

import base64

import pytest

from parsectl.model.errors import HTTPError
from parsectl.server.config import ServerOptions
from parsectl.server.envelope import KeyInfo, KeyPolicy, apply_body_keys, read_headers


def _options(**extra) -> ServerOptions:
    return ServerOptions.from_mapping({"appId": "app", "masterKey": "mk", **extra})


def _denied(func, *args) -> HTTPError:
    with pytest.raises(HTTPError) as info:
        func(*args)
    assert (info.value.status, info.value.message, info.value.json_content_type) == (403, "unauthorized", False)
    return info.value


def test_read_headers_case_insensitive():
    info = read_headers([
        (b"X-Parse-Application-Id", b"app"), (b"x-parse-master-key", b"mk"), (b"X-Parse-Session-Token", b"r:1"),
        (b"X-Parse-Installation-Id", b"inst"), (b"X-Parse-Client-Version", b"js8.6.2"),
        (b"X-Parse-REST-API-Key", b"rk"), (b"X-Parse-Javascript-Key", b"jk"), (b"X-Parse-Windows-Key", b"wk"),
        (b"X-Parse-Client-Key", b"ck"), (b"Content-Type", b"application/json"),
    ])
    assert (info.app_id, info.master_key, info.session_token) == ("app", "mk", "r:1")
    assert (info.installation_id, info.client_version) == ("inst", "js8.6.2")
    assert info.client_keys == {"restAPIKey": "rk", "javascriptKey": "jk", "dotNetKey": "wk", "clientKey": "ck"}


def _basic(text: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Basic " + base64.b64encode(text.encode()))]


def test_basic_auth():
    info = read_headers(_basic("app:mk"))
    assert (info.app_id, info.master_key) == ("app", "mk")
    info = read_headers(_basic("app:javascript-key=jk"))
    assert (info.app_id, info.master_key, info.client_keys) == ("app", None, {"javascriptKey": "jk"})
    info = read_headers([(b"X-Parse-Application-Id", b"hdr"), *_basic("app:mk")])
    assert info.app_id == "hdr"
    for header in (b"Bearer abc", b"Basic !!!", b"Basic " + base64.b64encode(b"nocolon")):
        info = read_headers([(b"Authorization", header)])
        assert (info.app_id, info.master_key) == (None, None)


def test_body_keys_used_when_header_app_id_missing():
    body = {"_ApplicationId": "app", "_JavaScriptKey": "jk", "_SessionToken": "r:x", "_InstallationId": "i",
            "_ClientVersion": "js8", "_MasterKey": "mk", "_RevocableSession": "1", "_context": {"a": 1},
            "_method": "GET", "where": {}}
    info = KeyInfo()
    apply_body_keys(info, body, _options())
    assert (info.app_id, info.session_token, info.installation_id) == ("app", "r:x", "i")
    assert (info.client_version, info.master_key, info.context) == ("js8", "mk", {"a": 1})
    assert info.client_keys == {"javascriptKey": "jk"}
    assert body == {"_method": "GET", "where": {}}


def test_body_keys_ignored_when_header_app_id_matches():
    body = {"_ApplicationId": "other", "_MasterKey": "x"}
    info = KeyInfo(app_id="app")
    apply_body_keys(info, body, _options())
    assert body == {"_ApplicationId": "other", "_MasterKey": "x"}
    assert info.master_key is None


def test_body_keys_refused():
    _denied(apply_body_keys, KeyInfo(), {"_ApplicationId": "wrong"}, _options())
    _denied(apply_body_keys, KeyInfo(), ["_ApplicationId", "app"], _options())
    _denied(apply_body_keys, KeyInfo(app_id="unknown"), {}, _options())
    _denied(apply_body_keys, KeyInfo(master_key="bad"), {"_ApplicationId": "app"}, _options())


def test_master_key_needs_allowed_ip():
    policy = KeyPolicy(_options(masterKeyIps=["127.0.0.1", "10.0.0.0/8"]))
    info = KeyInfo(app_id="app", master_key="mk", installation_id="i")
    auth = policy.authorize(info, "10.2.3.4")
    assert auth.master is True and auth.installation_id == "i"
    assert policy.authorize(info, "::ffff:127.0.0.1").master is True
    _denied(policy.authorize, info, "192.168.0.1")
    _denied(policy.authorize, info, None)
    _denied(policy.authorize, info, "not-an-ip")


def test_ip_allowed_ipv6():
    policy = KeyPolicy(_options())
    assert policy.ip_allowed("::1") is True
    assert policy.ip_allowed("127.0.0.1") is True
    assert policy.ip_allowed("::2") is False
    assert policy.ip_allowed("127.0.0.2") is False


def test_wrong_master_key_is_not_master():
    policy = KeyPolicy(_options())
    auth = policy.authorize(KeyInfo(app_id="app", master_key="nope"), "127.0.0.1")
    assert auth.master is False


def test_client_keys_enforced_only_when_configured():
    open_policy = KeyPolicy(_options())
    assert open_policy.authorize(KeyInfo(app_id="app"), "1.2.3.4").master is False
    policy = KeyPolicy(_options(clientKey="ck", javascriptKey="jk"))
    with_js = KeyInfo(app_id="app", session_token="r:s")
    with_js.client_keys = {"javascriptKey": "jk"}
    auth = policy.authorize(with_js, "1.2.3.4")
    assert (auth.master, auth.session_token) == (False, "r:s")
    wrong = KeyInfo(app_id="app")
    wrong.client_keys = {"clientKey": "jk"}
    _denied(policy.authorize, wrong, "1.2.3.4")
    _denied(policy.authorize, KeyInfo(app_id="app"), "1.2.3.4")
    assert policy.authorize(KeyInfo(app_id="app", master_key="mk"), "127.0.0.1").master is True
