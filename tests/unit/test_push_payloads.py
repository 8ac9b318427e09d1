"""Push payload building and body normalisation (parsectl.push), without a server."""

from __future__ import annotations

import pytest

from parsectl.model.errors import ParseError
from parsectl.push.apns import build_notification
from parsectl.push.base import classify
from parsectl.push.controller import body_for_locale, group_by_locale, locales_in
from parsectl.push.fcm import android_message, fcm_error
from parsectl.push.request import badge_update, js_string, normalise, push_time


def test_apns_headers_follow_push_type_and_data() -> None:
    headers, payload = build_notification({"alert": "a", "pushType": "voip", "priority": 5, "expiry": 0,
                                           "collapseId": "c", "id": "0a0a", "threadId": "t"}, topic="com.x")
    assert headers == {"apns-push-type": "voip", "apns-priority": "5", "apns-topic": "com.x.voip",
                       "apns-expiration": "0", "apns-collapse-id": "c", "apns-id": "0a0a"}
    assert payload == {"aps": {"alert": {"body": "a"}, "thread-id": "t"}}


def test_apns_title_before_alert_keeps_both() -> None:
    _, payload = build_notification({"title": "T", "alert": "B", "content-available": 0}, topic="t")
    assert payload == {"aps": {"alert": {"title": "T", "body": "B"}}}


def test_fcm_errors_are_named_as_firebase_admin_names_them() -> None:
    unregistered = {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                              "details": [{"errorCode": "UNREGISTERED"}]}}
    assert fcm_error(404, unregistered) == {"code": "messaging/registration-token-not-registered",
                                            "message": "Requested entity was not found."}
    assert fcm_error(400, {"error": {"status": "INVALID_ARGUMENT", "message": "m"}})["code"] == \
        "messaging/invalid-argument"
    assert fcm_error(502, {}) == {"code": "messaging/unknown-error", "message": "HTTP 502"}


def test_android_message_ttl_is_capped_at_four_weeks() -> None:
    message = android_message({"data": {"alert": "a"}, "expiration_time": 10**13}, "pid", 0)
    assert message["android"]["ttl"] == f"{4 * 7 * 24 * 3600}s"


def test_classify_prefers_push_type_and_skips_tokenless() -> None:
    groups = classify([{"deviceToken": "a", "deviceType": "ios", "pushType": "fcm"},
                       {"deviceToken": "b", "deviceType": "winphone"}, {"deviceType": "ios"},
                       {"deviceToken": "c", "deviceType": "android", "pushType": {"odd": 1}}])
    assert [d["deviceToken"] for d in groups["fcm"]] == ["a"]
    assert [d["deviceToken"] for d in groups["android"]] == ["c"]
    assert groups["ios"] == []


def test_times() -> None:
    body = normalise({"expiration_time": 1924992000, "push_time": "2031-05-01T10:00:00+02:00"}, 0)
    assert body["expiration_time"] == 1924992000000
    assert body["push_time"] == "2031-05-01T08:00:00.000Z"
    assert normalise({"expiration_interval": 10}, 1000)["expiration_time"] == 11000
    assert "expiration_time" not in normalise({"expiration_interval": 10, "push_time": 5}, 1000)
    assert push_time({"push_time": "2031-05-01"}) == "2031-05-01T00:00:00.000"
    with pytest.raises(ParseError) as info:
        push_time({"push_time": [1, None, "a"]})
    assert info.value.message == "1,,a is not valid time."


def test_badges() -> None:
    assert badge_update({"badge": "INCREMENT"}) == {"__op": "Increment", "amount": 1}
    assert badge_update({"badge": {"__op": "Increment", "amount": 3}}) == {"__op": "Increment", "amount": 3}
    assert badge_update({"badge": "7"}) == 7
    assert badge_update({"badge": 0}) is None
    with pytest.raises(ParseError):
        badge_update({"badge": "many"})


def test_js_string() -> None:
    assert [js_string(v) for v in (None, True, {"a": 1}, 2.0, 1e21, "x")] == ["null", "true", "[object Object]",
                                                                             "2", "1e+21", "x"]


def test_locales() -> None:
    body = {"data": {"alert": "Hi", "alert-fr": "Salut", "title-de": "Titel"}}
    assert locales_in(body) == ["fr", "de"]
    assert body_for_locale(body, "fr")["data"] == {"alert": "Salut"}
    assert body_for_locale(body, "de")["data"] == {"alert": "Hi", "title": "Titel"}
    assert body_for_locale(body, "default")["data"] == {"alert": "Hi"}
    groups = group_by_locale([{"localeIdentifier": "fr-CA"}, {"localeIdentifier": "en"}, {}], ["fr", "de"])
    assert {k: len(v) for k, v in groups.items()} == {"default": 2, "fr": 1}
