"""The migration's one-pass row maker (``parsectl.migrate.rest_rows``) equals the general path, record by
record: ``rest_to_storage`` then the writer's ``_Plan.rows``. It may decline a record (the general path
takes it), but what it makes must be the same row, and it must not decline the common shapes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from parsectl.migrate.rest_rows import row_maker
from parsectl.migrate.writers import row_plan
from parsectl.model.errors import ParseError
from parsectl.model.objects import rest_to_storage
from parsectl.model.schema import ClassSchema

T = "2015-01-01T00:00:00.000Z"
FIELDS: dict[str, dict[str, str]] = {
    "s": {"type": "String"}, "n": {"type": "Number"}, "b": {"type": "Boolean"}, "d": {"type": "Date"},
    "p": {"type": "Pointer", "targetClass": "_User"}, "f": {"type": "File"}, "o": {"type": "Object"},
    "a": {"type": "Array"}, "g": {"type": "GeoPoint"}, "poly": {"type": "Polygon"}, "by": {"type": "Bytes"},
    "r": {"type": "Relation", "targetClass": "_User"},
}
# per field: values of the field's own type (the common shapes)
TYPICAL: dict[str, list[Any]] = {
    "s": ["text ü", "", "a.b$c"], "n": [3, -2.5, 0, 1e300], "b": [True, False],
    "d": [{"__type": "Date", "iso": T}, {"__type": "Date", "iso": "2016-02-29T23:59:59.999Z"}],
    "p": [{"__type": "Pointer", "className": "_User", "objectId": "u1"}],
    "f": [{"__type": "File", "name": "a.txt", "url": "http://files.example/a.txt"}],
    "o": [{"k": "v"}, {"b": [1.0, 2.5, {"c": 3.0}], "a": "x.y", "when": {"__type": "Date", "iso": T}}, {}],
    "a": [["a", 1, 2.0, None], [], [{"__type": "Pointer", "className": "Post", "objectId": "p1"}]],
    "g": [{"__type": "GeoPoint", "latitude": 10.5, "longitude": -20}],
    "poly": [{"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]}],
    "by": [{"__type": "Bytes", "base64": "aGVsbG8="}],
    "r": [{"__type": "Relation", "className": "_User"}],
}
# values any field may get: other types, malformed special values, what the codec refuses
ODD: list[Any] = [
    None, "2015-01-01T00:00:00Z", 7, 2**70, -(2**63), 2**63, 4.0, True, "x",
    {"__type": "Date", "iso": "2015-02-30T00:00:00.000Z"}, {"__type": "Date", "iso": "2015-01-01T00:00:00Z"},
    {"__type": "Date"}, {"__type": "Pointer", "className": "Post", "objectId": "p9"},
    {"__type": "Pointer", "className": "", "objectId": "p9"}, {"__type": "Pointer", "className": "_User"},
    {"__type": "Pointer", "className": "_User", "objectId": 5},
    {"__type": "Pointer", "className": "_User", "objectId": "u2", "extra": 1},
    {"__type": "File", "name": ""}, {"__type": "File"}, {"__type": "Relation", "className": "Post"},
    {"__type": "Relation"}, {"__type": "GeoPoint", "latitude": 95, "longitude": 0},
    {"__type": "Bytes", "base64": "not base64!"}, {"__type": "Nope"}, {"a$b": 1}, {"a.b": 1},
    {"x": {"y": [1, {"__type": "Date", "iso": "bad"}]}}, [[[[1.0]]]], {"n": 2**64},
]
ACLS: list[Any] = [{"*": {"read": True}}, {"u1": {"read": True, "write": True}, "role:A": {"write": True}},
                   {}, None, {"*": {"read": "yes"}}, {"": {"read": True}}, ["*"], {"*": {"delete": True}}]
EXTRA_KEYS: list[tuple[str, Any]] = [("className", "Post"), ("__type", "Object"), ("_rperm", ["*"]),
                                     ("_private", 1), ("undeclared", 1), ("undeclared", None), ("bad key", None),
                                     ("bad key", 1), ("_nothing", None), ("", None)]


def _record(rng: random.Random, *, odd: float) -> dict[str, Any]:
    obj: dict[str, Any] = {"objectId": f"o{rng.randrange(10**6)}"}
    for stamp in ("createdAt", "updatedAt"):
        roll = rng.random()
        if roll > odd:
            obj[stamp] = T
        elif roll > odd / 2:
            obj[stamp] = rng.choice([{"__type": "Date", "iso": T}, "2015-01-01T00:00:00Z", "nope", None, 5])
    for name in FIELDS:
        roll = rng.random()
        if roll < 0.2:
            continue
        obj[name] = rng.choice(ODD) if roll < 0.2 + odd else rng.choice(TYPICAL[name])
    if rng.random() < 0.8:
        obj["ACL"] = rng.choice(ACLS[:2]) if rng.random() > odd else rng.choice(ACLS)
    if rng.random() < odd:
        key, value = rng.choice(EXTRA_KEYS)
        obj[key] = value
    if rng.random() < odd / 4:
        obj["objectId"] = rng.choice([None, "", 5])
    keys = list(obj)
    rng.shuffle(keys)
    return {k: obj[k] for k in keys}


def _general(plan: Any, class_name: str, obj: dict[str, Any]) -> list[Any] | None:
    try:
        stored = rest_to_storage(class_name, obj)
    except ParseError:
        return None
    try:
        return plan.rows([stored])[0]
    except Exception:  # noqa: BLE001 - a value of another type than its column's (the plan reports those)
        return None


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("odd", [0.0, 0.05, 0.3])
def test_the_row_maker_makes_the_general_paths_row_or_declines(kind: str, odd: float) -> None:
    schema = ClassSchema.new("Thing", FIELDS)
    plan = row_plan(kind, schema)
    make = row_maker(plan)
    assert make is not None
    rng = random.Random(f"{kind}-{odd}")
    made = declined = 0
    for _ in range(3000):
        obj = _record(rng, odd=odd)
        expected = _general(plan, "Thing", obj)
        row = make(obj)
        if row is None:
            declined += 1
            continue
        made += 1
        assert expected is not None, obj  # the maker never stores what the general path refuses
        assert row == expected, obj
        assert [type(v) for v in row] == [type(v) for v in expected], obj  # 1 stays 1, not 1.0 or True
    if odd == 0.0:
        assert declined == 0  # the common shapes all go the one-pass way
    else:
        assert made > 50 and declined > 50  # both ways are exercised


# users and installations: the keys rest_to_storage treats specially, with typical and odd values
SPECIAL: dict[str, dict[str, list[Any]]] = {
    "_User": {
        "username": ["alice", "Bob"], "email": ["a@example.com"], "emailVerified": [True, False],
        "bcryptPassword": ["$2a$10$abcdefghijklmnopqrstuv", "", None, 5],
        "sessionToken": ["r:legacy", "", None, 7], "password": ["plain text!", None],
        "authData": [{"facebook": {"id": "1", "access_token": "t"}}, {"anonymous": {"id": "x"}}],
        "age": [20, 3.5],
    },
    "_Installation": {
        "installationId": ["ABC-def-123", "lower", 5, None], "deviceToken": ["DEADbeef", "token", 9, None],
        "deviceType": ["ios", "android", "IOS", None, 3], "channels": [["", "news"], []],
        "appVersion": ["1.0"],
    },
}


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("class_name", sorted(SPECIAL))
def test_users_and_installations_get_what_rest_to_storage_gives_them(kind: str, class_name: str) -> None:
    """A user's bcryptPassword becomes its _hashed_password, its legacy sessionToken and a plain password
    are left out; an installation's installationId (and an iOS device token) are lower-cased."""
    schema = ClassSchema.new(class_name, {"age": {"type": "Number"}} if class_name == "_User" else {})
    plan = row_plan(kind, schema)
    make = row_maker(plan)
    assert make is not None
    rng = random.Random(f"{kind}-{class_name}")
    made = 0
    for _ in range(3000):
        obj: dict[str, Any] = {"objectId": f"o{rng.randrange(10**6)}", "createdAt": T, "updatedAt": T,
                               "ACL": rng.choice(ACLS[:2])}
        for key, values in SPECIAL[class_name].items():
            if rng.random() < 0.8:
                obj[key] = rng.choice(values)
        if rng.random() < 0.05:
            key, value = rng.choice(EXTRA_KEYS)
            obj[key] = value
        row = make(obj)
        expected = _general(plan, class_name, obj)
        if row is None:
            continue
        made += 1
        assert row == expected, obj
        assert [type(v) for v in row] == [type(v) for v in expected], obj
    assert made > 2500  # these shapes go the one-pass way
    if class_name == "_User":
        hashed = plan.slots["_hashed_password"][0]
        password = plan.slots.get("password")
        row = make({"objectId": "u", "createdAt": T, "updatedAt": T, "bcryptPassword": "$2a$10$x",
                    "password": "secret", "sessionToken": "r:1"})
        assert row is not None and row[hashed] == "$2a$10$x"
        assert "secret" not in row and "r:1" not in row and (password is None or row[password[0]] is None)
    else:
        row = make({"objectId": "i", "createdAt": T, "updatedAt": T, "installationId": "AB-C",
                    "deviceType": "ios", "deviceToken": "FFee"})
        assert row is not None and "ab-c" in row and "ffee" in row
