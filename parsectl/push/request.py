"""Checking and normalising a ``POST /push`` body, as parse-server's PushRouter and PushController do.

Every problem is a 115 (PUSH_MISCONFIGURED) with parse-server's message, raised before anything is stored.
Times follow parse-server: ``expiration_time`` becomes epoch milliseconds; ``push_time`` (epoch seconds or
an ISO date) becomes an ISO string, without the ``Z`` when it was given without a time zone ("local time").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from parsectl.model.errors import ParseError

PUSH_MISCONFIGURED = 115
_OFFSET = re.compile(r"(.+)([+-])\d\d:\d\d$")


def misconfigured(message: str) -> ParseError:
    return ParseError(PUSH_MISCONFIGURED, message)


def js_string(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, for parse-server's messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))  # JavaScript drops ".0" and writes 1e21 and beyond with an exponent
    return str(value)


def query_condition(body: dict[str, Any]) -> Any:
    has_where, has_channels = "where" in body, "channels" in body
    if has_where and has_channels:
        raise misconfigured("Channels and query can not be set at the same time.")
    if has_where:
        where = body["where"]
        if not isinstance(where, dict):  # parse-server fails later (or answers 500); parsectl says so now
            raise ParseError(107, "where must be a JSON object")
        return where
    if has_channels:
        return {"channels": {"$in": body["channels"]}}
    raise misconfigured('Sending a push requires either "channels" or a "where" query.')


def _parse_date(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if parsed.tzinfo is None:
            date_only = "T" not in value and " " not in value.strip()
            parsed = parsed.replace(tzinfo=UTC) if date_only else parsed.astimezone()
        return parsed.astimezone(UTC)
    return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expiration_time(body: dict[str, Any]) -> int | None:
    if "expiration_time" not in body:
        return None
    value = body["expiration_time"]
    moment = _parse_date(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    if moment is None:
        raise misconfigured(f"{js_string(value)} is not valid time.")
    return int(moment.timestamp() * 1000)


def expiration_interval(body: dict[str, Any]) -> float | None:
    if "expiration_interval" not in body:
        return None
    value = body["expiration_interval"]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise misconfigured("expiration_interval must be a number greater than 0")
    return value


def push_time(body: dict[str, Any]) -> str | None:
    if "push_time" not in body:
        return None
    value = body["push_time"]
    moment = _parse_date(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    if moment is None:
        raise misconfigured(f"{js_string(value)} is not valid time.")
    local = not (isinstance(value, str) and (value.endswith("Z") or _OFFSET.match(value)))
    text = _iso(moment)
    return text[:-1] if local else text


def badge_update(data: Any) -> Any:
    """The ``badge`` change a push makes to its installations (an Increment op or a number), or None."""
    if not isinstance(data, dict) or not data.get("badge"):
        return None
    badge = data["badge"]
    if isinstance(badge, str) and badge.lower() == "increment":
        return {"__op": "Increment", "amount": 1}
    if isinstance(badge, dict) and isinstance(badge.get("__op"), str) and badge["__op"].lower() == "increment":
        amount = _number(badge.get("amount"))
        if amount:
            return {"__op": "Increment", "amount": amount}
    number = _number(badge)
    if number and not isinstance(badge, dict):
        return number
    # parse-server throws a bare string here (a 500); parsectl answers 115 with its message
    raise misconfigured("Invalid value for badge, expected number or 'Increment' or {increment: number}")


def is_incrementing(body: dict[str, Any]) -> bool:
    data = body.get("data")
    if not isinstance(data, dict) or not data.get("badge"):
        return False
    badge = data["badge"]
    if isinstance(badge, str):
        return badge.lower() == "increment"
    return (isinstance(badge, dict) and isinstance(badge.get("__op"), str) and badge["__op"].lower() == "increment"
            and bool(_number(badge.get("amount"))))


def _number(value: Any) -> int | float | None:
    """JavaScript's ``Number(value)`` for the values a badge can take (None when NaN)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return None


def normalise(body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The body with parse-server's normalised times (raises 115 on a bad one)."""
    body = dict(body)
    expiry = expiration_time(body)
    interval = expiration_interval(body)
    body.pop("expiration_time", None)
    body.pop("expiration_interval", None)
    if expiry is not None:
        body["expiration_time"] = expiry
    if interval is not None:
        body["expiration_interval"] = interval
    if expiry and interval:
        raise misconfigured("Both expiration_time and expiration_interval cannot be set")
    if interval and "push_time" not in body:
        body["expiration_time"] = int(now_ms + interval * 1000)
    formatted = push_time(body)
    if formatted is not None:
        body["push_time"] = formatted
    return body
