"""Firebase Cloud Messaging, HTTP v1 API, with a service account.

The service account's key signs an RS256 assertion that its ``token_uri`` exchanges for an OAuth2 access
token (kept until five minutes before it expires); each device then gets one
``POST /v1/projects/{project_id}/messages:send``. Payloads are converted as @parse/push-adapter converts
them: for Android the push ``data`` travels JSON-encoded in ``android.data.data`` (what the Parse Android
SDK reads), for Apple devices (``ios`` configured with ``firebaseServiceAccount``) it becomes an ``apns``
block. Errors are reported as firebase-admin names them (``messaging/registration-token-not-registered``
for UNREGISTERED, ``messaging/invalid-argument`` for INVALID_ARGUMENT, ...).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import ssl
import string
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from parsectl.push.apns import build_notification
from parsectl.push.base import Device, DeviceResult, failed, sent
from parsectl.push.tokens import load_private_key, sign_rs256

log = logging.getLogger("parsectl.push.fcm")

ENDPOINT = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TTL_MAX = 4 * 7 * 24 * 60 * 60  # FCM keeps a message four weeks at most
_APNS_INTEGER_KEYS = ("badge", "content-available", "mutable-content", "priority", "expiration_time")
_CONCURRENCY = 10
# FCM v1 error codes (from details[].errorCode, else error.status) -> firebase-admin's error codes
_ERROR_CODES = {
    "UNREGISTERED": "messaging/registration-token-not-registered",
    "INVALID_ARGUMENT": "messaging/invalid-argument",
    "SENDER_ID_MISMATCH": "messaging/mismatched-credential",
    "QUOTA_EXCEEDED": "messaging/message-rate-exceeded",
    "UNAVAILABLE": "messaging/server-unavailable",
    "INTERNAL": "messaging/internal-error",
    "THIRD_PARTY_AUTH_ERROR": "messaging/third-party-auth-error",
    "APNS_AUTH_ERROR": "messaging/third-party-auth-error",
    "NOT_FOUND": "messaging/registration-token-not-registered",
    "PERMISSION_DENIED": "messaging/mismatched-credential",
    "UNAUTHENTICATED": "messaging/invalid-credential",
    "RESOURCE_EXHAUSTED": "messaging/message-rate-exceeded",
}


class ServiceAccount:
    """The fields of a Google service-account key that FCM needs."""

    def __init__(self, info: dict[str, Any]) -> None:
        missing = [k for k in ("project_id", "private_key", "client_email") if not isinstance(info.get(k), str)]
        if missing:
            raise ValueError(f"the service account has no {', '.join(missing)}")
        self.project_id: str = info["project_id"]
        self.client_email: str = info["client_email"]
        self.private_key_id: str | None = info.get("private_key_id")
        self.token_uri: str = info.get("token_uri") or DEFAULT_TOKEN_URI
        try:
            self.key = load_private_key(info["private_key"])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"the service account's private_key is not a PEM private key ({exc})") from None

    def assertion(self, now: float) -> str:
        header = {"kid": self.private_key_id} if self.private_key_id else {}
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": int(now), "exp": int(now) + 3600}
        return sign_rs256(self.key, header, claims)


class FCMSender:
    """Sends to FCM for one push-type family: ``android`` (data messages) or ``apple`` (apns messages)."""

    def __init__(self, account: ServiceAccount, kind: str, *, endpoint: str | None = None,
                 verify: ssl.SSLContext | bool = True, timeout: float = 10.0) -> None:
        self.account, self.kind = account, kind
        self.endpoint = (endpoint or ENDPOINT).rstrip("/")
        self._verify, self._timeout = verify, timeout
        self._client: httpx.AsyncClient | None = None
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._token_lock = asyncio.Lock()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=self._verify, timeout=self._timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def access_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            now = time.time()
            if not renew and self._access_token and now < self._expires_at - 300:
                return self._access_token
            response = await self._http().post(self.account.token_uri, data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": self.account.assertion(now)})
            answer = _json_object(response.content)
            if response.status_code != 200 or not isinstance(answer.get("access_token"), str):
                raise FCMAuthError(f"the token endpoint refused the service account: {response.status_code} "
                                   f"{answer.get('error_description') or answer.get('error') or ''}".strip())
            expires_in = answer.get("expires_in")
            self._access_token = answer["access_token"]
            self._expires_at = now + (expires_in if isinstance(expires_in, int | float) else 3600)
            return self._access_token

    def message(self, body: dict[str, Any], push_id: str, timestamp_ms: int) -> dict[str, Any]:
        if "rawPayload" in body:
            return copy.deepcopy(body["rawPayload"]) if isinstance(body["rawPayload"], dict) else {}
        if self.kind == "apple":
            return apple_message(body)
        return android_message(body, push_id, timestamp_ms)

    async def send(self, body: dict[str, Any], devices: list[Device]) -> list[DeviceResult]:
        if not devices:
            return []
        now_ms = int(time.time() * 1000)
        message = self.message(body, _push_id(), now_ms)
        try:
            await self.access_token()
        except (FCMAuthError, httpx.HTTPError) as exc:
            log.error("FCM authentication failed: %s", exc)
            return [failed(_device(d), {"code": "messaging/invalid-credential", "message": str(exc)})
                    for d in devices]
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(device: Device) -> DeviceResult:
            async with gate:
                error = await self._post({**message, "token": device["deviceToken"]})
            if error is None:
                return sent(_device(device))
            log.error("FCM refused device %s: %s", device["deviceToken"], error)
            return failed(_device(device), error)

        return list(await asyncio.gather(*(one(d) for d in devices)))

    async def _post(self, message: dict[str, Any]) -> dict[str, str] | None:
        url = f"{self.endpoint}/v1/projects/{quote(self.account.project_id, safe='')}/messages:send"
        for attempt in range(2):
            try:
                token = await self.access_token(renew=attempt > 0)
                response = await self._http().post(url, content=orjson.dumps({"message": message}), headers={
                    "authorization": f"Bearer {token}", "content-type": "application/json"})
            except (FCMAuthError, httpx.HTTPError) as exc:
                return {"code": "messaging/unknown-error", "message": str(exc) or type(exc).__name__}
            if response.status_code == 200:
                return None
            if response.status_code == 401 and attempt == 0:
                continue  # the access token was revoked or expired early: get a new one once
            return fcm_error(response.status_code, _json_object(response.content))
        return None  # unreachable: the loop returns


class FCMAuthError(Exception):
    pass


def fcm_error(status: int, answer: dict[str, Any]) -> dict[str, str]:
    """An FCM v1 error answer as firebase-admin reports it: ``{code: "messaging/...", message}``."""
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    code = None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("errorCode"), str):
            code = detail["errorCode"]
            break
    code = code or error.get("status")
    mapped = _ERROR_CODES.get(code) if isinstance(code, str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else f"HTTP {status}"
    return {"code": mapped or "messaging/unknown-error", "message": message}


def android_message(body: dict[str, Any], push_id: str, timestamp_ms: int) -> dict[str, Any]:
    android: dict[str, Any] = {"priority": "high"}
    if "notification" in body:
        android["notification"] = body["notification"]
    if isinstance(body.get("data"), dict):
        data = {k: v for k, v in body["data"].items() if k not in _APNS_INTEGER_KEYS}
        android["data"] = {"push_id": push_id,
                           "time": datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(
                               timespec="milliseconds").replace("+00:00", "Z"),
                           "data": orjson.dumps(data).decode()}
    expiration = body.get("expiration_time")
    if isinstance(expiration, int | float) and not isinstance(expiration, bool) and expiration:
        ttl = max(0, min(int((expiration - timestamp_ms) // 1000), TTL_MAX))
        android["ttl"] = f"{ttl}s"
    return {"android": android}


def apple_message(body: dict[str, Any]) -> dict[str, Any]:
    data = body["data"] if isinstance(body.get("data"), dict) else body
    expiration = body.get("expiration_time") or data.get("expiration_time")
    headers: dict[str, str] = {"apns-push-type": str(body.get("push_type") or data.get("push_type") or "alert")}
    if isinstance(expiration, int | float) and not isinstance(expiration, bool):
        headers["apns-expiration"] = str(round(expiration / 1000))
    for header, key in (("apns-collapse-id", "collapse_id"), ("apns-priority", "priority")):
        value = body.get(key) or data.get(key)
        if value:
            headers[header] = str(value)
    _, payload = build_notification({k: v for k, v in data.items() if k not in (
        "expiration_time", "collapse_id", "push_type", "priority")}, topic=None)
    return {"apns": {"headers": headers, "payload": payload}}


def _json_object(content: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _device(device: Device) -> Device:
    return {"deviceToken": device["deviceToken"], "deviceType": device.get("deviceType")}


_ALPHABET = string.ascii_letters + string.digits


def _push_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))
