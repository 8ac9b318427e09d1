"""The push-adapter boundary, as parse-server's PushAdapter.

An adapter has ``async send(body, installations, push_status_id) -> list[DeviceResult]``: ``body`` is the
``/push`` request body after the server has normalised it (``data``, ``expiration_time`` in epoch
milliseconds, ``push_time``, ...), ``installations`` the ``_Installation`` objects (REST form) of one
batch. Each result says, for one device, whether the provider took the notification and, if not, why
(``response.error``: the provider's reason, e.g. APNs ``Unregistered`` or an FCM error object).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypedDict, runtime_checkable

# The deviceType/pushType values parse-server's push adapter knows (it also has web and expo senders).
VALID_PUSH_TYPES = ("ios", "osx", "tvos", "watchos", "android", "fcm", "web", "expo")
APPLE_TYPES = ("ios", "osx", "tvos", "watchos")
ANDROID_TYPES = ("android", "fcm")


class Device(TypedDict, total=False):
    deviceToken: str
    deviceType: str
    appIdentifier: str | None


class DeviceResult(TypedDict, total=False):
    device: Device
    transmitted: bool
    response: dict[str, Any]


@runtime_checkable
class PushAdapter(Protocol):
    async def send(self, body: dict[str, Any], installations: list[dict[str, Any]],
                   push_status_id: str) -> list[DeviceResult]: ...


class Sender(Protocol):
    """One provider (APNs, FCM) behind :class:`ProviderAdapter`."""

    async def send(self, body: dict[str, Any], devices: list[Device]) -> list[DeviceResult]: ...

    async def close(self) -> None: ...


def sent(device: Device) -> DeviceResult:
    return {"transmitted": True, "device": device}


def failed(device: Device, error: Any) -> DeviceResult:
    return {"transmitted": False, "device": device, "response": {"error": error}}


def classify(installations: list[dict[str, Any]], push_types: tuple[str, ...] = VALID_PUSH_TYPES
             ) -> dict[str, list[Device]]:
    """Devices by push type (``pushType`` first, then ``deviceType``); installations without a token or of
    an unknown type are left out, as parse-server's adapter does."""
    by_type: dict[str, list[Device]] = {t: [] for t in push_types}
    for installation in installations:
        token = installation.get("deviceToken")
        if not token:
            continue
        push_type, device_type = installation.get("pushType"), installation.get("deviceType")
        bucket = (by_type[push_type] if isinstance(push_type, str) and push_type in by_type
                  else by_type.get(device_type) if isinstance(device_type, str) else None)
        if bucket is not None:
            bucket.append({"deviceToken": token, "deviceType": installation.get("deviceType"),
                           "appIdentifier": installation.get("appIdentifier")})
    return by_type


class ProviderAdapter:
    """parsectl's default adapter (parse-server's ParsePushAdapter): routes each device to the sender for
    its push type (APNs for ios/osx/tvos/watchos, FCM for android); devices of a type with no sender fail."""

    def __init__(self, senders: dict[str, Sender]) -> None:
        self.senders = senders

    async def send(self, body: dict[str, Any], installations: list[dict[str, Any]],
                   push_status_id: str) -> list[DeviceResult]:
        results: list[DeviceResult] = []
        calls = []
        for push_type, devices in classify(installations).items():
            if not devices:
                continue
            sender = self.senders.get(push_type)
            if sender is None:
                results.extend(failed(d, f"Can not find sender for push type {push_type}") for d in devices)
            else:
                calls.append(sender.send(body, devices))
        for batch in await asyncio.gather(*calls):
            results.extend(batch)
        return results

    async def close(self) -> None:
        for sender in {id(s): s for s in self.senders.values()}.values():
            await sender.close()
