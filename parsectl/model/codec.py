"""The codec for Parse wire values (REST JSON encoding).

Objects cross every boundary of parsectl in *wire form*: the JSON the REST API speaks, with
``{"__type": ...}`` dictionaries for the special types. This module validates and normalises those
values, infers their schema type, and converts dates, ACLs and permission arrays. Storage adapters
and the migration tool call these functions rather than parsing wire values themselves.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from parsectl.model import errors
from parsectl.model.errors import ParseError

JSON = Any
FieldType = dict[str, str]

MAX_NESTING = 100

_ISO_FORMATS_OK = ("T", " ")


# --- dates -----------------------------------------------------------------------------------------


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 string (as JavaScript's ``Date`` would accept from the SDKs) to an aware UTC datetime."""
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError(f"not an ISO date: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_NO_OFFSET = timedelta(0)


def format_iso(dt: datetime) -> str:
    """Format as JavaScript's ``Date.toJSON``: UTC, milliseconds, ``Z``."""
    if dt.tzinfo is not UTC and dt.utcoffset() != _NO_OFFSET:
        dt = dt.astimezone(UTC)
    if 1000 <= dt.year <= 9999:
        return dt.isoformat(timespec="milliseconds")[:23] + "Z"  # C-speed for the common case
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return format_iso(datetime.now(UTC))


_CANONICAL_ISO = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$")


def is_canonical_iso(value: str) -> bool:
    """True for a ``YYYY-MM-DDTHH:MM:SS.mmmZ`` string naming a real day (what the server itself writes)."""
    if not _CANONICAL_ISO.match(value):
        return False
    try:
        datetime(int(value[:4]), int(value[5:7]), int(value[8:10]))
    except ValueError:
        return False
    return True


_REAL_DAYS: set[str] = set()  # "YYYY-MM-DD" prefixes known to name a real day (bounded: cleared when full)


def normalize_iso(value: Any) -> str:
    """An ISO string in canonical ``YYYY-MM-DDTHH:MM:SS.mmmZ`` form, or a 111 error."""
    if isinstance(value, str) and _CANONICAL_ISO.match(value):
        day = value[:10]  # already canonical (the common case): only check the day exists in that month
        if day in _REAL_DAYS:
            return value
        try:
            datetime(int(value[:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            raise ParseError(errors.INCORRECT_TYPE, "This is not a valid Date") from None
        if len(_REAL_DAYS) >= 100_000:
            _REAL_DAYS.clear()
        _REAL_DAYS.add(day)
        return value
    try:
        return format_iso(parse_iso(value))
    except (ValueError, TypeError, OverflowError):
        raise ParseError(errors.INCORRECT_TYPE, "This is not a valid Date") from None


def date(iso: str) -> dict[str, str]:
    return {"__type": "Date", "iso": iso}


def date_iso(value: Any) -> str | None:
    """The canonical ISO string of a Date wire value (or of a bare ISO string), or None."""
    if isinstance(value, dict) and value.get("__type") == "Date":
        return normalize_iso(value.get("iso"))
    if isinstance(value, str):
        try:
            return normalize_iso(value)
        except ParseError:
            return None
    return None


# --- constructors ----------------------------------------------------------------------------------


def pointer(class_name: str, object_id: str) -> dict[str, str]:
    return {"__type": "Pointer", "className": class_name, "objectId": object_id}


def relation(class_name: str) -> dict[str, str]:
    return {"__type": "Relation", "className": class_name}


def is_pointer(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("__type") == "Pointer"
        and isinstance(value.get("className"), str)
        and isinstance(value.get("objectId"), str)
    )


# --- validation and normalisation --------------------------------------------------------------------


def _bad(type_name: str) -> ParseError:
    return ParseError(errors.INCORRECT_TYPE, f"This is not a valid {type_name}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def normalize_typed(value: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``{"__type": ...}`` value and return its canonical wire form."""
    kind = value.get("__type")
    if kind == "Date":
        return date(normalize_iso(value.get("iso")))
    if kind == "Pointer":
        cls, oid = value.get("className"), value.get("objectId")
        if not isinstance(cls, str) or not cls or not isinstance(oid, str):
            raise _bad("Pointer")
        return pointer(cls, oid)
    if kind == "Relation":
        cls = value.get("className")
        if not isinstance(cls, str) or not cls:
            raise _bad("Relation")
        return relation(cls)
    if kind == "File":
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("File")
        url = value.get("url")
        # a File's url is kept: parse-server stores a nested File as it was sent (a field that is a File is
        # stored by name, and its url made when it is read), and the SDKs refuse a File without one
        return {"__type": "File", "name": name, "url": url} if isinstance(url, str) and url else \
            {"__type": "File", "name": name}
    if kind == "GeoPoint":
        lat, lng = value.get("latitude"), value.get("longitude")
        if not _number(lat) or not _number(lng):
            raise _bad("GeoPoint")
        if not -90 <= lat <= 90:
            raise ParseError(errors.INVALID_JSON, f"GeoPoint latitude out of bounds: {lat}.")
        if not -180 <= lng <= 180:
            raise ParseError(errors.INVALID_JSON, f"GeoPoint longitude out of bounds: {lng}.")
        return {"__type": "GeoPoint", "latitude": lat, "longitude": lng}
    if kind == "Polygon":
        return {"__type": "Polygon", "coordinates": _polygon(value.get("coordinates"))}
    if kind == "Bytes":
        data = value.get("base64")
        if not isinstance(data, str) or not data:
            raise _bad("Bytes")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("Bytes") from None
        return {"__type": "Bytes", "base64": data}
    raise _bad(str(kind))


def _polygon(coords: Any) -> list[list[float]]:
    if not isinstance(coords, list) or len(coords) < 3:
        raise ParseError(errors.INCORRECT_TYPE, "Polygon must have at least 3 values")
    ring: list[list[float]] = []
    for point in coords:
        if not (isinstance(point, list | tuple) and len(point) == 2 and all(_number(c) for c in point)):
            raise ParseError(errors.INCORRECT_TYPE, "This is not a valid Polygon")
        lat, lng = point
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):
            raise ParseError(errors.INVALID_JSON, "GeoPoint out of bounds in Polygon")
        ring.append([lat, lng])
    if ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    distinct = {tuple(p) for p in ring}
    if len(distinct) < 3:
        raise ParseError(errors.INTERNAL_SERVER_ERROR, "GeoJSON: Loop must have at least 3 different vertices")
    return ring


def normalize_field(value: Any) -> Any:
    """:func:`normalize_value` of a field's own value: a File there is stored by its name only (the url is
    made when it is read), while a File inside an object or array keeps the url it was sent with."""
    out = normalize_value(value)
    if type(out) is dict and out.get("__type") == "File" and "url" in out:
        return {"__type": "File", "name": out["name"]}
    return out


_UNCHANGED = frozenset({str, float, bool, type(None)})  # what normalize_value returns as it is (when not too deep)


def normalize_value(value: Any, depth: int = 0) -> Any:
    """Validate a field value (not an ``__op``) and return its canonical wire form.

    Nested objects may not use ``$`` or ``.`` in their keys (121), the special types are checked
    (111), and nesting deeper than :data:`MAX_NESTING` levels is refused (107).
    """
    if depth > MAX_NESTING:
        raise ParseError(errors.INVALID_JSON, "Object is nested too deeply")
    if type(value) in _UNCHANGED:
        return value
    inner = depth + 1
    unchanged = _UNCHANGED if inner <= MAX_NESTING else frozenset()  # scalars one level down, without a call
    if isinstance(value, dict):
        if "__type" in value:
            return normalize_typed(value)
        out = {}
        for key, item in value.items():
            if "$" in key or "." in key:
                raise ParseError(
                    errors.INVALID_NESTED_KEY, "Nested keys should not contain the '$' or '.' characters"
                )
            out[key] = item if type(item) in unchanged else normalize_value(item, inner)
        return out
    if isinstance(value, list):
        return [item if type(item) in unchanged else normalize_value(item, inner) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


# --- types -------------------------------------------------------------------------------------------

_TYPED = {"Date", "File", "GeoPoint", "Polygon", "Bytes"}


def type_of(value: Any) -> FieldType | None:
    """The schema type a (normalised) field value implies, or None for null/Delete."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"type": "Boolean"}
    if isinstance(value, str):
        return {"type": "String"}
    if isinstance(value, int | float):
        return {"type": "Number"}
    if isinstance(value, list):
        return {"type": "Array"}
    if isinstance(value, dict):
        kind = value.get("__type")
        if kind in _TYPED:
            return {"type": kind}
        if kind in ("Pointer", "Relation"):
            return {"type": kind, "targetClass": value["className"]}
        return {"type": "Object"}
    raise ParseError(errors.INCORRECT_TYPE, f"invalid value type: {type(value).__name__}")


def type_to_string(field_type: FieldType | None) -> str:
    if field_type is None:
        return "null"
    if field_type.get("targetClass"):
        return f"{field_type['type']}<{field_type['targetClass']}>"
    return field_type["type"]


def same_type(a: FieldType, b: FieldType) -> bool:
    return a.get("type") == b.get("type") and a.get("targetClass") == b.get("targetClass")


# --- ACL ---------------------------------------------------------------------------------------------


def validate_acl(acl: Any) -> dict[str, dict[str, bool]]:
    """Check an ACL wire value (123 "Invalid ACL." otherwise) and drop false entries."""
    if not isinstance(acl, dict):
        raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
    out: dict[str, dict[str, bool]] = {}
    for entity, perms in acl.items():
        if not isinstance(perms, dict) or not entity:
            raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
        clean = {}
        for perm, allowed in perms.items():
            if perm not in ("read", "write") or not isinstance(allowed, bool):
                raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
            if allowed:
                clean[perm] = True
        out[entity] = clean
    return out


def acl_to_perms(acl: dict[str, dict[str, bool]]) -> tuple[list[str], list[str]]:
    """An ACL as parse-server's ``_rperm`` / ``_wperm`` arrays."""
    rperm = [entity for entity, perms in acl.items() if perms.get("read")]
    wperm = [entity for entity, perms in acl.items() if perms.get("write")]
    return rperm, wperm


def acl_perms(acl: Any) -> tuple[list[str], list[str]]:
    """:func:`acl_to_perms` of :func:`validate_acl` in one pass (bulk conversion of exported objects)."""
    if not isinstance(acl, dict):
        raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
    rperm: list[str] = []
    wperm: list[str] = []
    for entity, perms in acl.items():
        if not isinstance(perms, dict) or not entity:
            raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
        for perm, allowed in perms.items():
            if perm not in ("read", "write") or not isinstance(allowed, bool):
                raise ParseError(errors.INVALID_ACL, "Invalid ACL.")
        if perms.get("read"):
            rperm.append(entity)
        if perms.get("write"):
            wperm.append(entity)
    return rperm, wperm


def perms_to_acl(rperm: list[str] | None, wperm: list[str] | None) -> dict[str, dict[str, bool]] | None:
    """The ACL wire value for stored permission arrays; None when the object has no ACL."""
    if rperm is None and wperm is None:
        return None
    acl: dict[str, dict[str, bool]] = {}
    for entity in rperm or ():
        acl.setdefault(entity, {})["read"] = True
    for entity in wperm or ():
        acl.setdefault(entity, {})["write"] = True
    return acl
