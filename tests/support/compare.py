"""Normalizing and comparing Parse REST answers from two servers."""

from __future__ import annotations

import re
from typing import Any

ID_RE = re.compile(r"^[A-Za-z0-9]{10}$")
ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TOKEN_RE = re.compile(r"^r:[0-9a-f]{32}$")


def normalize(value: Any, labels: dict[str, str] | None = None) -> Any:
    """Replace objectIds ("<id>" or "<id:label>"), createdAt/updatedAt ("<ts>") and session tokens
    ("<token>") by placeholders after checking their shape; badly shaped values stay visible."""
    labels = labels or {}
    if isinstance(value, list):
        return [normalize(v, labels) for v in value]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if key == "objectId":
                if isinstance(v, str) and v in labels:
                    out[key] = f"<id:{labels[v]}>"
                else:
                    out[key] = "<id>" if isinstance(v, str) and ID_RE.match(v) else f"<bad-id:{v!r}>"
            elif key in ("createdAt", "updatedAt"):
                out[key] = "<ts>" if isinstance(v, str) and ISO_RE.match(v) else f"<bad-ts:{v!r}>"
            elif key == "sessionToken":
                out[key] = "<token>" if isinstance(v, str) and TOKEN_RE.match(v) else f"<bad-token:{v!r}>"
            else:
                out[key] = normalize(v, labels)
        return out
    return value


def shape(value: Any) -> Any:
    """The structure of a JSON value: dict keys (recursively) and the JSON types of leaves."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return "string"


def differences(expected: Any, actual: Any, path: str = "$") -> list[str]:
    """Human-readable list of the places where two JSON values differ (empty when equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in sorted(set(expected) | set(actual), key=str):
            sub = f"{path}.{key}"
            if key not in actual:
                out.append(f"{sub}: missing (expected {expected[key]!r})")
            elif key not in expected:
                out.append(f"{sub}: unexpected key (got {actual[key]!r})")
            else:
                out.extend(differences(expected[key], actual[key], sub))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: list length {len(actual)} != expected {len(expected)}:\n"
                    f"    expected {expected!r}\n    got      {actual!r}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(differences(e, a, f"{path}[{i}]"))
        return out
    if type(expected) is not type(actual) and not (
        isinstance(expected, int | float) and isinstance(actual, int | float)
        and not isinstance(expected, bool) and not isinstance(actual, bool)
    ):
        return [f"{path}: expected {expected!r} ({type(expected).__name__}), got {actual!r} ({type(actual).__name__})"]
    if expected != actual:
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def assert_same(expected: Any, actual: Any, what: str = "value", expected_name: str = "expected") -> None:
    diffs = differences(expected, actual)
    if diffs:
        listing = "\n  ".join(diffs[:60])
        more = f"\n  ... and {len(diffs) - 60} more" if len(diffs) > 60 else ""
        raise AssertionError(f"{what} differs from {expected_name} in {len(diffs)} place(s):\n  {listing}{more}")
