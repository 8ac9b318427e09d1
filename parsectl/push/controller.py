"""Sending a push: the ``_PushStatus`` record, the badge update, the batches, the tallies.

The order is parse-server's (PushController, PushQueue, PushWorker, StatusHandler):

1. ``_PushStatus`` is created (status ``pending``, or ``scheduled`` for a ``push_time`` when the server has
   ``scheduledPush``) and its objectId answered in ``X-Parse-Push-Status-Id``;
2. in the background, a ``badge`` in the data updates the targeted installations (``Increment`` or a number);
3. a scheduled push stops there: as parse-server, parsectl leaves sending it to an external scheduler;
4. otherwise the installations (the query plus ``deviceToken`` exists) are counted: none -> ``succeeded``;
   else ``running`` with ``count`` = number of batches (``queueOptions.batchSize``, 100), and each batch is
   read ordered by objectId, split by locale (``alert-fr``...) and, for an incrementing badge, by badge
   value, sent through the adapter, and tallied (``numSent``, ``numFailed``, ``sentPerType``,
   ``failedPerType``, ``count`` - 1); the last batch sets ``succeeded`` and drops ``count``;
5. any error marks the push ``failed`` with ``errorMessage``.

With the environment variable ``PARSE_SERVER_CLEANUP_INVALID_INSTALLATIONS`` set (as in parse-server),
installations whose token the provider called invalid (APNs ``Unregistered``/``BadDeviceToken``, FCM
unregistered/invalid token) lose their ``deviceToken``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import os
import time
from typing import Any

import orjson

from parsectl.model import codec, query
from parsectl.model.errors import ParseError
from parsectl.model.ops import Delete, parse_value
from parsectl.push.base import DeviceResult, PushAdapter
from parsectl.push.config import PushSetup
from parsectl.push.request import badge_update, is_incrementing, normalise, query_condition
from parsectl.server.auth import Auth

log = logging.getLogger("parsectl.push")

STATUS_CLASS = "_PushStatus"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_LOCALIZABLE = ("alert", "title")
_FCM_INVALID = ("messaging/registration-token-not-registered", "messaging/invalid-registration-token")


class PushController:
    def __init__(self, rest: Any, setup: PushSetup | None, *, scheduled_push: bool = False) -> None:
        self.rest = rest
        self.setup = setup
        self.scheduled_push = scheduled_push and setup is not None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def has_push(self) -> bool:
        return self.setup is not None

    @property
    def adapter(self) -> PushAdapter:
        assert self.setup is not None
        return self.setup.adapter

    async def send_push(self, body: dict[str, Any]) -> str:
        """Check the body, record the push and start sending it; the ``_PushStatus`` objectId."""
        where = query_condition(body)
        if self.setup is None:
            raise ParseError(115, "Missing push configuration")
        now_ms = int(time.time() * 1000)
        body = normalise(body, now_ms)
        badge = badge_update(body.get("data"))
        scheduled = "push_time" in body and self.scheduled_push
        if "push_time" in body and not scheduled:
            log.warning("Trying to schedule a push while server is not configured (scheduledPush). "
                        "Push will be sent immediately")
        status_id = await self._create_status(body, where, scheduled)
        task = asyncio.create_task(self._run(body, where, badge, scheduled, status_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return status_id

    async def wait(self) -> None:
        """Wait for the pushes being sent (used at shutdown and by tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.wait()
        close = getattr(self.setup.adapter if self.setup else None, "close", None)
        if close is not None:
            await close()

    # --- the _PushStatus row ---------------------------------------------------------------------------
    async def _create_status(self, body: dict[str, Any], where: Any, scheduled: bool) -> str:
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        alert = data.get("alert")
        if isinstance(alert, str):
            push_hash = hashlib.md5(alert.encode(), usedforsecurity=False).hexdigest()
        elif isinstance(alert, dict | list) or alert is None and "alert" in data:
            push_hash = hashlib.md5(_js_json(alert), usedforsecurity=False).hexdigest()
        else:
            push_hash = EMPTY_MD5
        row: dict[str, Any] = {
            "pushTime": body["push_time"] if scheduled else codec.now_iso(),
            "query": _js_json(where).decode(),
            "payload": _js_json(body.get("data") or {}).decode(),
            "source": "rest",
            "status": "scheduled" if scheduled else "pending",
            "numSent": 0,
            "pushHash": push_hash,
            "ACL": {},
        }
        if body.get("expiration_time") is not None:
            row["expiry"] = body["expiration_time"]
        if body.get("expiration_interval") is not None:
            row["expiration_interval"] = body["expiration_interval"]
        object_id, _ = await self.rest.create(Auth(master=True), STATUS_CLASS, row)
        return object_id

    async def _update_status(self, status_id: str, changes: dict[str, Any]) -> None:
        await self.rest.update(Auth(master=True), STATUS_CLASS, status_id, changes)

    # --- the background part ----------------------------------------------------------------------------
    async def _run(self, body: dict[str, Any], where: dict[str, Any], badge: Any, scheduled: bool,
                   status_id: str) -> None:
        try:
            if badge is not None:
                await self._update_badges(where, badge)
            if scheduled:
                return
            await self._send(body, where, status_id)
        except Exception as exc:  # noqa: BLE001 - a background task: record the failure, never raise
            if not isinstance(exc, ParseError):
                log.exception("push %s failed", status_id)
            error = ({"code": exc.code, "message": exc.message} if isinstance(exc, ParseError)
                     else {"message": str(exc) or type(exc).__name__})
            try:
                await self._update_status(status_id, {"errorMessage": error, "status": "failed"})
            except Exception:  # noqa: BLE001
                log.exception("could not record the failure of push %s", status_id)

    def _installation_where(self, where: dict[str, Any]) -> query.Node:
        targeted = copy.deepcopy(where)
        if "deviceToken" not in targeted:
            targeted["deviceToken"] = {"$exists": True}
        return query.parse_where(targeted, master=True)

    async def _update_badges(self, where: dict[str, Any], badge: Any) -> None:
        schema = await self.rest.schemas.get("_Installation")
        if schema is None:
            return
        ids: list[str] = []
        skip, page = 0, 1000
        while True:
            found = await self.rest.find(Auth(master=True), "_Installation", query.FindOptions(
                where=self._installation_where(where), limit=page, skip=skip, keys=["objectId"],
                order=[query.SortKey("objectId", False)]))
            ids.extend(r["objectId"] for r in found["results"])
            if len(found["results"]) < page:
                break
            skip += page
        change = parse_value(badge)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            await self.rest.storage.update(schema, query.In("objectId", chunk),
                                           {"badge": change, "updatedAt": codec.now_iso()}, many=True)

    async def _send(self, body: dict[str, Any], where: dict[str, Any], status_id: str) -> None:
        assert self.setup is not None
        batch_size = self.setup.batch_size
        counted = await self.rest.find(Auth(master=True), "_Installation", query.FindOptions(
            where=self._installation_where(where), limit=0, count=True))
        total = counted.get("count") or 0
        if not total:
            await self._update_status(status_id, {"status": "succeeded", "count": {"__op": "Delete"}})
            return
        batches = -(-total // batch_size)
        await self._update_status(status_id, {"status": "running", "count": batches})
        tally = _Tally()
        for number in range(batches):
            found = await self.rest.find(Auth(master=True), "_Installation", query.FindOptions(
                where=self._installation_where(where), limit=batch_size, skip=number * batch_size,
                order=[query.SortKey("objectId", False)]))
            results = await self._to_adapter(body, found["results"], status_id) if found["results"] else []
            tally.add(results)
            await self._clean_up(results)
            update = tally.update(remaining=batches - number - 1)
            await self._update_status(status_id, update)

    async def _to_adapter(self, body: dict[str, Any], installations: list[dict[str, Any]],
                          status_id: str) -> list[DeviceResult]:
        locales = locales_in(body)
        if locales:
            results: list[DeviceResult] = []
            groups = group_by_locale(installations, locales)
            for locale, members in groups.items():
                if members:
                    results.extend(await self._to_adapter(body_for_locale(body, locale), members, status_id))
            return results
        if not is_incrementing(body):
            return list(await self.adapter.send(body, installations, status_id) or [])
        results = []
        by_badge: dict[Any, list[dict[str, Any]]] = {}
        for installation in installations:
            by_badge.setdefault(installation.get("badge"), []).append(installation)
        for value, members in by_badge.items():
            payload = copy.deepcopy(body)
            if isinstance(value, int | float) and not isinstance(value, bool):
                payload["data"]["badge"] = int(value)
            else:
                payload["data"].pop("badge", None)
            results.extend(await self.adapter.send(payload, members, status_id) or [])
        return results

    async def _clean_up(self, results: list[DeviceResult]) -> None:
        if not os.environ.get("PARSE_SERVER_CLEANUP_INVALID_INSTALLATIONS"):
            return
        tokens = [r["device"]["deviceToken"] for r in results if _invalid_token(r)]
        schema = await self.rest.schemas.get("_Installation") if tokens else None
        if schema is None:
            return
        log.info("Removing device tokens on %d _Installations", len(tokens))
        await self.rest.storage.update(schema, query.In("deviceToken", tokens), {"deviceToken": Delete()},
                                       many=True)


class _Tally:
    """What the batches sent so far add up to (parse-server adds them with Increment ops)."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.sent_per_type: dict[str, int] = {}
        self.failed_per_type: dict[str, int] = {}

    def add(self, results: list[DeviceResult]) -> None:
        for result in results:
            device = result.get("device") if isinstance(result, dict) else None
            if not isinstance(device, dict) or not device.get("deviceType"):
                continue
            kind = str(device["deviceType"])
            if result.get("transmitted"):
                self.sent += 1
                self.sent_per_type[kind] = self.sent_per_type.get(kind, 0) + 1
            else:
                self.failed += 1
                self.failed_per_type[kind] = self.failed_per_type.get(kind, 0) + 1

    def update(self, remaining: int) -> dict[str, Any]:
        update: dict[str, Any] = {}
        if self.sent:
            update["numSent"] = self.sent
        if self.failed:
            update["numFailed"] = self.failed
        if self.sent_per_type:
            update["sentPerType"] = dict(self.sent_per_type)
        if self.failed_per_type:
            update["failedPerType"] = dict(self.failed_per_type)
        if remaining:
            update.update(status="running", count=remaining)
        else:
            update.update(status="succeeded", count={"__op": "Delete"})
        return update


def _invalid_token(result: DeviceResult) -> bool:
    if result.get("transmitted") or not isinstance(result.get("response"), dict):
        return False
    device = result.get("device") or {}
    if not device.get("deviceToken"):
        return False
    error = result["response"].get("error")
    if error in ("Unregistered", "BadDeviceToken", "NotRegistered", "InvalidRegistration"):
        return True
    if isinstance(error, dict):
        code = error.get("code")
        return code in _FCM_INVALID or (code == "messaging/invalid-argument" and error.get("message") ==
                                        "The registration token is not a valid FCM registration token")
    return False


def _js_json(value: Any) -> bytes:
    return orjson.dumps(value)


# --- localisation (parse-server's Push/utils) ------------------------------------------------------------
def locales_in(body: dict[str, Any]) -> list[str]:
    data = body.get("data")
    if not isinstance(data, dict):
        return []
    found: list[str] = []
    for key in data:
        for name in _LOCALIZABLE:
            if key.startswith(name + "-") and key[len(name) + 1:] not in found:
                found.append(key[len(name) + 1:])
    return found


def _strip_locales(body: dict[str, Any]) -> dict[str, Any]:
    body["data"] = {k: v for k, v in body["data"].items()
                    if not any(k.startswith(name + "-") for name in _LOCALIZABLE)}
    return body


def body_for_locale(body: dict[str, Any], locale: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    if locale != "default":
        for name in _LOCALIZABLE:
            value = body["data"].get(f"{name}-{locale}")
            if value:
                body["data"][name] = value
    return _strip_locales(body)


def group_by_locale(installations: list[dict[str, Any]], locales: list[str]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {"default": []}
    for installation in installations:
        identifier = installation.get("localeIdentifier")
        for locale in locales:
            if isinstance(identifier, str) and identifier.startswith(locale):
                groups.setdefault(locale, []).append(installation)
                break
        else:
            groups["default"].append(installation)
    return groups
