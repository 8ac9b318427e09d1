"""Whole objects: REST/export form <-> storage form, and a canonical form for comparing them.

*REST form* is what the REST API and hosted Parse exports carry: ``objectId``, ``createdAt``/``updatedAt``
as ISO strings, ``ACL``, wire values, and in exports ``bcryptPassword``/``sessionToken`` on users.
*Storage form* (see :mod:`parsectl.storage.base`) splits the ACL into ``_rperm``/``_wperm`` and keeps
password hashes in ``_hashed_password``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

from parsectl.model import codec, errors
from parsectl.model.errors import ParseError
from parsectl.model.schema import USER_INTERNAL_FIELDS, field_name_is_valid

StoredObject = dict[str, Any]

# field names repeat across objects: each is checked once
valid_field_name = functools.lru_cache(maxsize=4096)(field_name_is_valid)

# Export-only keys and where they go in storage form (None: dropped).
_USER_EXPORT_KEYS = {"bcryptPassword": "_hashed_password", "sessionToken": "_session_token", "password": None}


def rest_to_storage(class_name: str, obj: dict[str, Any]) -> StoredObject:
    """Validate and convert one object in REST/export form; ParseError on what cannot be stored."""
    object_id = obj.get("objectId")
    if not isinstance(object_id, str) or not object_id:
        raise ParseError(errors.MISSING_OBJECT_ID, "object has no objectId")
    out: StoredObject = {"objectId": object_id}
    for stamp in ("createdAt", "updatedAt"):
        value = obj.get(stamp)
        iso = codec.date_iso(value) if value is not None else None
        if value is not None and iso is None:
            raise ParseError(errors.INCORRECT_TYPE, f"{stamp} is not a valid date: {value!r}")
        if iso:
            out[stamp] = iso
    out.setdefault("createdAt", out.get("updatedAt") or codec.now_iso())
    out.setdefault("updatedAt", out["createdAt"])
    for key, value in obj.items():
        if key in ("objectId", "createdAt", "updatedAt", "className", "__type"):
            continue
        if key == "ACL":
            if value is not None:
                out["_rperm"], out["_wperm"] = codec.acl_perms(value)
            continue
        if class_name == "_User" and key in _USER_EXPORT_KEYS:
            target = _USER_EXPORT_KEYS[key]
            if target and isinstance(value, str) and value:
                out[target] = value
            continue
        if key.startswith("_"):
            if key in ("_rperm", "_wperm") and isinstance(value, list):
                out[key] = [str(v) for v in value]
            elif class_name == "_User" and key in USER_INTERNAL_FIELDS and value is not None:
                out[key] = codec.normalize_value(value)
            continue
        if not valid_field_name(key):
            raise ParseError(errors.INVALID_KEY_NAME, f"Invalid field name: {key}.")
        kind = type(value)
        if kind is str or kind is bool or kind is float:  # the common scalars are their own wire form
            out[key] = value
        elif value is None or (kind is dict and value.get("__type") == "Relation"):
            continue
        else:
            out[key] = codec.normalize_field(value)
    if class_name == "_Installation":
        _normalize_installation(out)
    return out


def _normalize_installation(obj: StoredObject) -> None:
    """As parse-server stores installations: lower-case installationId, and iOS device tokens."""
    if isinstance(obj.get("installationId"), str):
        obj["installationId"] = obj["installationId"].lower()
    if isinstance(obj.get("deviceToken"), str) and obj.get("deviceType") == "ios":
        obj["deviceToken"] = obj["deviceToken"].lower()


def storage_to_rest(obj: StoredObject) -> dict[str, Any]:
    """Storage form back to REST form (internal fields kept, ACL rebuilt)."""
    out = {k: v for k, v in obj.items() if k not in ("_rperm", "_wperm")}
    acl = codec.perms_to_acl(obj.get("_rperm"), obj.get("_wperm"))
    if acl is not None:
        out["ACL"] = acl
    return out


# --- canonical form ----------------------------------------------------------------------------------


def _canonical(value: Any, nested: bool = False) -> Any:
    """``nested``: inside an object or array, where a File is stored with its url (a field that is a File
    is stored by name only, its url made when it is read)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)
    if isinstance(value, list):
        return [_canonical(v, True) for v in value]
    if isinstance(value, dict):
        kind = value.get("__type")
        if kind == "File":
            url = value.get("url") if nested else None
            return {"__type": "File", "name": value.get("name"), **({"url": url} if url else {})}
        if kind == "Pointer":
            return {"__type": "Pointer", "className": value.get("className"), "objectId": value.get("objectId")}
        if kind == "Date":
            return {"__type": "Date", "iso": codec.date_iso(value) or value.get("iso")}
        return {k: _canonical(v, True) for k, v in value.items()}
    return value


def canonical(obj: StoredObject, *, ignore: tuple[str, ...] = ()) -> bytes:
    """A byte string equal for two storage-form objects exactly when they hold the same data."""
    clean = {k: _canonical(v) for k, v in obj.items() if k not in ignore and v is not None}
    for perm in ("_rperm", "_wperm"):
        if isinstance(clean.get(perm), list):
            clean[perm] = sorted(clean[perm])
    return orjson.dumps(clean, option=orjson.OPT_SORT_KEYS)


def checksum(obj: StoredObject, *, ignore: tuple[str, ...] = ()) -> str:
    return hashlib.sha256(canonical(obj, ignore=ignore)).hexdigest()
