"""Export records straight to a bulk writer's rows, in one pass, for the records nearly every export holds.

The general path converts a record to storage form (:func:`parsectl.model.objects.rest_to_storage`,
which validates every value) and then the storage form to a row (:meth:`parsectl.migrate.writers._Plan.rows`).
A row maker does both at once, with no storage-form object in between: each column's value is what the
general path makes of it, the value itself when it is a plain ``str``, ``bool`` or ``float``, else the
codec's ``normalize_field`` of it, then the column's encoder. A Date, a Pointer and a File take a shorter
way to the same value.

Users and installations get what ``rest_to_storage`` does for them: a user's ``bcryptPassword`` goes to
``_hashed_password``, its legacy ``sessionToken`` and a plain ``password`` are left out; an installation's
``installationId``, and an iOS device token, are lower-cased.

Anything else makes the maker answer None, and the record goes the general path, which stores it or
reports why it cannot: a key the class has no column for, an internal ``_`` key, a missing objectId or
timestamp, a value the codec refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from parsectl.model import codec
from parsectl.model.objects import valid_field_name

if TYPE_CHECKING:
    from parsectl.migrate.writers import _Plan

Row = list[Any]
Converter = Callable[[Any], Any]
RowMaker = Callable[[dict[str, Any]], Row | None]

_AS_IS = frozenset({str, bool, float})  # rest_to_storage keeps values of these types as they are


class _Decline(Exception):
    """The record is not one the maker handles: the general path takes it."""


def _general(encode: Converter | None) -> Converter:
    normalize = codec.normalize_field  # a field's own value, as rest_to_storage makes it

    def general(v: Any) -> Any:
        if type(v) not in _AS_IS:
            if type(v) is dict and v.get("__type") == "Relation":
                raise _Decline  # rest_to_storage leaves a relation value out, whatever the column
            v = normalize(v)
        return v if encode is None else encode(v)

    return general


def _converter(field_type: str, encode: Converter | None) -> Converter:
    """A column's value from the record's value (an exception when the codec or the encoder refuses it)."""
    general = _general(encode)
    if encode is None or field_type not in ("Date", "Pointer", "File"):
        return general
    # the few types that skip normalize_value's dispatch: the same checks, the same value to encode
    normalize_iso = codec.normalize_iso

    def date(v: Any) -> Any:
        if type(v) is dict and v.get("__type") == "Date":
            return encode(codec.date(normalize_iso(v.get("iso"))))
        return general(v)

    def pointer(v: Any) -> Any:
        if type(v) is dict and v.get("__type") == "Pointer":
            cls, oid = v.get("className"), v.get("objectId")
            if isinstance(cls, str) and cls and isinstance(oid, str):
                return encode(codec.pointer(cls, oid))
        return general(v)

    def file(v: Any) -> Any:
        if type(v) is dict and v.get("__type") == "File":
            name = v.get("name")
            if isinstance(name, str) and name:
                return encode({"__type": "File", "name": name})
        return general(v)

    return {"Date": date, "Pointer": pointer, "File": file}[field_type]


def _relation(v: Any) -> None:
    """A Relation field's value: left out (its rows come from the join file)."""
    if type(v) is not dict or v.get("__type") != "Relation":
        raise _Decline


def _stamp(v: Any) -> str:
    iso = codec.date_iso(v)
    if iso is None:
        raise _Decline
    return iso


def _secret(encode: Converter | None) -> Converter:
    """A user's ``bcryptPassword``: its ``_hashed_password`` when a non-empty string, else nothing."""

    def secret(v: Any) -> Any:
        if type(v) is not str or not v:
            return None
        return v if encode is None else encode(v)

    return secret


def _lower(convert: Converter) -> Converter:
    """An installation's ``installationId``: lower-cased when a string."""
    return lambda v: convert(v.lower() if type(v) is str else v)


def row_maker(plan: _Plan) -> RowMaker | None:
    """A function making ``plan``'s row from an export record, or None for a record it leaves to the
    general path."""
    schema = plan.schema
    width = len(plan.columns)
    perms = plan.slots["_rperm"][1]
    # key -> (column, converter): 0 the objectId (checked first), -1 the ACL's two columns, -2 keys
    # rest_to_storage passes over, -3 a Relation field (its value is checked, then left out)
    keys: dict[str, tuple[int, Converter | None]] = {"objectId": (0, None), "createdAt": (1, _stamp),
                                                     "updatedAt": (2, _stamp), "ACL": (-1, None),
                                                     "className": (-2, None), "__type": (-2, None)}
    for name, (index, encode) in plan.slots.items():
        if name not in keys and index > 4 and not name.startswith("_") and valid_field_name(name):
            keys[name] = (index, _converter(schema.fields[name]["type"], encode))
    for name, field_type in schema.fields.items():
        if name not in plan.slots and field_type["type"] == "Relation" and valid_field_name(name):
            keys[name] = (-3, _relation)
    if schema.class_name == "_User":  # rest_to_storage's export-only keys
        index, encode = plan.slots["_hashed_password"]
        keys["bcryptPassword"] = (index, _secret(encode))
        keys["sessionToken"] = keys["password"] = (-2, None)  # a legacy token has no column; never a password
    ios_token: tuple[int, Converter] | None = None
    if schema.class_name == "_Installation":
        if "installationId" in keys:
            index, convert = keys["installationId"]
            keys["installationId"] = (index, _lower(convert))
        ios_token = keys.get("deviceToken")
    lookup = keys.get
    valid_name = valid_field_name

    def make(obj: dict[str, Any]) -> Row | None:
        oid = obj.get("objectId")
        if type(oid) is not str or not oid:
            return None
        row: Row = [None] * width
        row[0] = oid
        try:
            for key, value in obj.items():
                if value is None:
                    if key in keys or key[:1] == "_" or valid_name(key):
                        continue  # rest_to_storage leaves nulls out (after checking the name)
                    return None
                slot = lookup(key)
                if slot is None:
                    return None
                index, convert = slot
                if index > 0:
                    row[index] = convert(value)
                elif index == -1:
                    rperm, wperm = codec.acl_perms(value)
                    row[3], row[4] = perms(rperm), perms(wperm)
                elif index == -3:
                    convert(value)
        except Exception:  # noqa: BLE001 - the general path meets the same value and reports it as it does
            return None
        if row[1] is None or row[2] is None:
            return None  # a timestamp missing: rest_to_storage fills it in
        if ios_token is not None and obj.get("deviceType") == "ios" and type(obj.get("deviceToken")) is str:
            index, convert = ios_token
            try:
                row[index] = convert(obj["deviceToken"].lower())
            except Exception:  # noqa: BLE001 - as above
                return None
        return row

    return make
