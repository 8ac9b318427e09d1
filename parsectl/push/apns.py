"""APNs over HTTP/2 with token (``.p8`` key) or certificate (``.p12``, or PEM cert and key) authentication.

One :class:`APNsProvider` per configured app (``topic``); like @parse/push-adapter's native APNs sender,
devices are grouped by ``appIdentifier`` and sent through the providers whose topic matches (production
first, then sandbox for the devices production refused), or through providers without a topic.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from parsectl.push.base import Device, DeviceResult, failed, sent
from parsectl.push.tokens import ProviderToken

log = logging.getLogger("parsectl.push.apns")

PRODUCTION = "https://api.push.apple.com"
SANDBOX = "https://api.sandbox.push.apple.com"
RETRYABLE = frozenset((408, 429, 500, 502, 503, 504))
CONCURRENCY = 100  # requests in flight per provider (one HTTP/2 connection)
_HEADER_KEYS = frozenset(("id", "collapseId", "channelId", "requestId", "pushType", "topic", "expiry", "priority",
                          "expiration_time", "collapse_id", "push_type"))
_TOPIC_SUFFIX = {"location": ".location-query", "voip": ".voip", "complication": ".complication",
                 "fileprovider": ".pushkit.fileprovider", "liveactivity": ".push-type.liveactivity",
                 "pushtotalk": ".voip-ptt"}


def build_notification(data: dict[str, Any], *, topic: str | None, expiration_time: Any = None,
                       collapse_id: Any = None, push_type: Any = None, priority: Any = None
                       ) -> tuple[dict[str, str], dict[str, Any]]:
    """APNs request headers and JSON payload for a push's ``data``, as @parse/push-adapter builds them:
    Parse's keys go into ``aps`` (alert as ``{body}``, title, badge, sound, content-available and
    mutable-content only when 1, category, thread-id, ...), any other key stays beside ``aps``."""
    aps: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, value in data.items():
        if key == "aps":
            if isinstance(value, dict):
                aps.update(value)
        elif key == "alert":
            if isinstance(value, dict):
                aps["alert"] = value
            else:
                aps["alert"] = aps["alert"] if isinstance(aps.get("alert"), dict) else {}
                aps["alert"]["body"] = value
        elif key == "title":
            aps["alert"] = aps["alert"] if isinstance(aps.get("alert"), dict) else {}
            aps["alert"]["title"] = value
        elif key in ("badge", "sound", "category"):
            aps[key] = value
        elif key in ("content-available", "mutable-content"):
            if value == 1 and not isinstance(value, bool):
                aps[key] = 1
            else:
                aps.pop(key, None)
        elif key == "targetContentIdentifier":
            aps["target-content-id"] = value
        elif key == "interruptionLevel":
            aps["interruption-level"] = value
        elif key == "threadId":
            aps["thread-id"] = value
        elif key in _HEADER_KEYS:
            continue
        else:
            custom[key] = value
    kind = data.get("pushType") or push_type or "alert"
    resolved_topic = data.get("topic") or (f"{topic}{_TOPIC_SUFFIX.get(kind, '')}" if topic else None)
    expiry: Any = -1
    if isinstance(expiration_time, int | float) and not isinstance(expiration_time, bool):
        expiry = round(expiration_time / 1000)
    if data.get("expiry") is not None:
        expiry = data["expiry"]
    headers = {"apns-push-type": str(kind), "apns-priority": str(data.get("priority") or priority or 10)}
    if resolved_topic:
        headers["apns-topic"] = str(resolved_topic)
    if not (isinstance(expiry, int | float) and expiry < 0):
        headers["apns-expiration"] = str(expiry)
    collapse = data.get("collapseId") if data.get("collapseId") is not None else collapse_id
    if collapse is not None:
        headers["apns-collapse-id"] = str(collapse)
    if data.get("id"):
        headers["apns-id"] = str(data["id"])
    return headers, {"aps": aps, **custom}


class APNsProvider:
    """One APNs connection (HTTP/2) for one topic, authenticated by its provider token, or (``token`` None) by
    the client certificate its TLS context (``verify``) presents."""

    def __init__(self, *, token: ProviderToken | None, topic: str | None, production: bool, endpoint: str | None = None,
                 verify: ssl.SSLContext | bool = True, timeout: float = 5.0, retry_limit: int = 3) -> None:
        self.token, self.topic, self.production = token, topic, production
        self.endpoint = (endpoint or (PRODUCTION if production else SANDBOX)).rstrip("/")
        self.retry_limit = retry_limit
        self._verify, self._timeout = verify, timeout
        self._client: httpx.AsyncClient | None = None
        self._gate = asyncio.Semaphore(CONCURRENCY)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(http2=True, verify=self._verify, timeout=self._timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, device_token: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Send one notification; (HTTP status, APNs answer), status 0 when the connection failed."""
        refreshed = False
        attempt = 0
        while True:
            try:
                async with self._gate:
                    response = await self._http().post(
                        f"{self.endpoint}/3/device/{quote(device_token, safe='')}", content=body,
                        headers=headers if self.token is None else
                        {**headers, "authorization": f"bearer {self.token.current}"})
            except httpx.HTTPError as exc:
                if attempt < self.retry_limit:
                    attempt += 1
                    continue
                return 0, {"reason": str(exc) or type(exc).__name__}
            answer = _json_object(response.content)
            if response.status_code == 403 and answer.get("reason") == "ExpiredProviderToken" and not refreshed \
                    and self.token is not None:
                self.token.refresh()
                refreshed = True
                continue
            if response.status_code in RETRYABLE and attempt < self.retry_limit:
                attempt += 1
                await asyncio.sleep(_retry_after(response))
                continue
            return response.status_code, answer

    async def send(self, headers: dict[str, str], payload: dict[str, Any], tokens: list[str]
                   ) -> tuple[list[str], list[tuple[str, str]]]:
        body = orjson.dumps(payload)
        answers = await asyncio.gather(*(self.post(t, headers, body) for t in tokens))
        ok: list[str] = []
        bad: list[tuple[str, str]] = []
        for token, (status, answer) in zip(tokens, answers, strict=True):
            if status == 200:
                ok.append(token)
            else:
                reason = answer.get("reason") if isinstance(answer.get("reason"), str) else "Unknown status"
                log.error("APNs refused device %s: %s %s", token, status, reason)
                bad.append((token, reason))
        return ok, bad


def _json_object(content: bytes) -> dict[str, Any]:
    if not content:
        return {}
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {"reason": content.decode("utf-8", "replace")[:200]}
    return value if isinstance(value, dict) else {}


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", "0")), 30.0)
    except ValueError:
        return 0.0


class APNsSender:
    """The APNs sender for the Apple push types: picks providers by the devices' ``appIdentifier``."""

    def __init__(self, providers: list[APNsProvider]) -> None:
        self.providers = sorted(providers, key=lambda p: 0 if p.production else 1)

    def _providers_for(self, app_identifier: Any) -> list[APNsProvider]:
        matching = [p for p in self.providers if p.topic is not None and p.topic == app_identifier]
        return matching or [p for p in self.providers if not p.topic]

    async def send(self, body: dict[str, Any], devices: list[Device]) -> list[DeviceResult]:
        data = body.get("data")
        if not isinstance(data, dict) or not devices:
            log.warning("invalid push payload")
            return []
        groups: dict[Any, list[Device]] = {}
        for device in devices:
            groups.setdefault(device.get("appIdentifier"), []).append(device)
        results: list[DeviceResult] = []
        for app_identifier, group in groups.items():
            providers = self._providers_for(app_identifier)
            if not providers:
                results.extend(failed(_apple(d), "No Provider found") for d in group)
                continue
            headers, payload = build_notification(
                data, topic=app_identifier, expiration_time=_first(body, data, "expiration_time"),
                collapse_id=_first(body, data, "collapse_id"), push_type=_first(body, data, "push_type"),
                priority=_first(body, data, "priority"))
            pending = [d["deviceToken"] for d in group]
            refusals: list[tuple[str, str]] = []
            for provider in providers:  # production first; what it refuses is tried on the next one
                ok, refusals = await provider.send(headers, payload, pending)
                results.extend(sent(_apple({"deviceToken": t})) for t in ok)
                pending = [t for t, _ in refusals]
                if not pending:
                    break
            results.extend(failed(_apple({"deviceToken": t}), reason) for t, reason in refusals)
        return results

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()


def _apple(device: Device) -> Device:
    # parse-server's APNs sender reports every device as deviceType "ios", whatever its Apple platform
    return {"deviceToken": device["deviceToken"], "deviceType": "ios"}


def _first(body: dict[str, Any], data: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    return value if value is not None else data.get(key)
