"""The development adapter (``push: {"adapter": "log"}``): logs what would be sent, sends nothing.

Every installation with a device token is reported as transmitted, so ``_PushStatus`` counts move as
they would with real providers.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from parsectl.push.base import DeviceResult, classify, sent

log = logging.getLogger("parsectl.push.log")


class LogAdapter:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or log

    async def send(self, body: dict[str, Any], installations: list[dict[str, Any]],
                   push_status_id: str) -> list[DeviceResult]:
        results: list[DeviceResult] = []
        payload = orjson.dumps(body.get("data") or {}).decode()
        for push_type, devices in classify(installations).items():
            for device in devices:
                self.log.info("push %s: would send to %s device %s: %s", push_status_id, push_type,
                              device["deviceToken"], payload)
                results.append(sent({"deviceToken": device["deviceToken"], "deviceType": device.get("deviceType")}))
        return results

    async def close(self) -> None:
        return None
