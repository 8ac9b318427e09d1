"""The wire-value codec: dates, special types, nesting rules, type inference and ACLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from parsectl.model import codec
from parsectl.model.errors import ParseError


def _error(func, *args):
    with pytest.raises(ParseError) as info:
        func(*args)
    return info.value.code, info.value.message


def _nest(levels: int):
    value = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# --- dates -------------------------------------------------------------------------------------------


def test_format_iso_is_js_to_json_form():
    dt = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert codec.format_iso(dt) == "2024-01-02T03:04:05.678Z"


def test_format_iso_converts_offsets_to_utc_and_pads_small_years():
    tz = timezone(timedelta(hours=-5))
    assert codec.format_iso(datetime(2024, 1, 1, 22, 30, tzinfo=tz)) == "2024-01-02T03:30:00.000Z"
    assert codec.format_iso(datetime(999, 3, 4, tzinfo=UTC)) == "0999-03-04T00:00:00.000Z"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05.678Z"),
        ("2024-01-02T03:04:05.678z", "2024-01-02T03:04:05.678Z"),
        ("2024-01-02T03:04:05.6789Z", "2024-01-02T03:04:05.678Z"),
        ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02T03:04:05+02:00", "2024-01-02T01:04:05.000Z"),
        ("2024-01-01T23:30:00.5-01:00", "2024-01-02T00:30:00.500Z"),
        ("2024-01-02T03:04:05", "2024-01-02T03:04:05.000Z"),
        ("2024-01-02", "2024-01-02T00:00:00.000Z"),
        ("2024-01-02 03:04:05Z", "2024-01-02T03:04:05.000Z"),
    ],
)
def test_normalize_iso(text, canonical):
    assert codec.normalize_iso(text) == canonical


def test_parse_iso_returns_aware_utc():
    dt = codec.parse_iso("2024-06-01T12:00:00+05:30")
    assert dt.tzinfo == UTC
    assert dt == datetime(2024, 6, 1, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2024-13-02T00:00:00Z", "not a date", "2024", "", None, 12345, "2024-02-30"])
def test_bad_dates_are_111(bad):
    assert _error(codec.normalize_iso, bad) == (111, "This is not a valid Date")


def test_date_value_normalised_and_bad_date_value_111():
    assert codec.normalize_value({"__type": "Date", "iso": "2024-01-02T05:04:05+02:00"}) == {
        "__type": "Date", "iso": "2024-01-02T03:04:05.000Z"}
    assert _error(codec.normalize_value, {"__type": "Date", "iso": "yesterday"}) == (111, "This is not a valid Date")
    assert _error(codec.normalize_value, {"__type": "Date"}) == (111, "This is not a valid Date")


def test_date_iso():
    assert codec.date_iso({"__type": "Date", "iso": "2024-01-02T03:04:05Z"}) == "2024-01-02T03:04:05.000Z"
    assert codec.date_iso("2024-01-02T03:04:05.1+00:00") == "2024-01-02T03:04:05.100Z"
    assert codec.date_iso("garbage-string") is None
    assert codec.date_iso(5) is None
    assert codec.date_iso({"__type": "Pointer"}) is None


def test_now_iso_is_canonical_and_current():
    text = codec.now_iso()
    assert len(text) == 24 and text.endswith("Z") and text[19] == "."
    assert abs((codec.parse_iso(text) - datetime.now(UTC)).total_seconds()) < 5


# --- special types -------------------------------------------------------------------------------------


def test_pointer_normalised_drops_extra_keys():
    value = {"__type": "Pointer", "className": "Post", "objectId": "abc", "extra": 1}
    assert codec.normalize_value(value) == {"__type": "Pointer", "className": "Post", "objectId": "abc"}
    assert codec.is_pointer(codec.pointer("A", "b"))
    assert not codec.is_pointer({"__type": "Pointer", "className": "A"})
    assert not codec.is_pointer("A$b")


@pytest.mark.parametrize(
    "bad",
    [
        {"__type": "Pointer", "objectId": "x"},
        {"__type": "Pointer", "className": "", "objectId": "x"},
        {"__type": "Pointer", "className": "A", "objectId": 5},
    ],
)
def test_bad_pointer_111(bad):
    assert _error(codec.normalize_value, bad) == (111, "This is not a valid Pointer")


def test_relation():
    assert codec.normalize_value({"__type": "Relation", "className": "T", "x": 1}) == codec.relation("T")
    assert _error(codec.normalize_value, {"__type": "Relation"}) == (111, "This is not a valid Relation")


def test_file_keeps_its_name_and_url():
    """A nested File is stored as sent, url included (parse-server's way; the SDKs refuse a File without
    one); a field that is a File is stored by name only (see test_objects)."""
    value = {"__type": "File", "name": "abc_a.txt", "url": "http://x/files/app/abc_a.txt", "extra": 1}
    assert codec.normalize_value(value) == {"__type": "File", "name": "abc_a.txt", "url": "http://x/files/app/abc_a.txt"}
    assert codec.normalize_value([value]) == [codec.normalize_value(value)]
    for url in (None, "", 3):
        assert codec.normalize_value({"__type": "File", "name": "a.txt", "url": url}) == {"__type": "File", "name": "a.txt"}
    assert _error(codec.normalize_value, {"__type": "File", "url": "u"}) == (111, "This is not a valid File")
    assert _error(codec.normalize_value, {"__type": "File", "name": ""}) == (111, "This is not a valid File")


def test_geopoint_valid_and_edges():
    assert codec.normalize_value({"__type": "GeoPoint", "latitude": -90, "longitude": 180.0}) == {
        "__type": "GeoPoint", "latitude": -90, "longitude": 180.0}


@pytest.mark.parametrize(
    ("lat", "lng", "expected"),
    [
        (90.5, 0, (107, "GeoPoint latitude out of bounds: 90.5.")),
        (-91, 0, (107, "GeoPoint latitude out of bounds: -91.")),
        (0, 180.01, (107, "GeoPoint longitude out of bounds: 180.01.")),
        (0, -181, (107, "GeoPoint longitude out of bounds: -181.")),
        ("1", 0, (111, "This is not a valid GeoPoint")),
        (True, 0, (111, "This is not a valid GeoPoint")),
        (0, None, (111, "This is not a valid GeoPoint")),
    ],
)
def test_geopoint_errors(lat, lng, expected):
    assert _error(codec.normalize_value, {"__type": "GeoPoint", "latitude": lat, "longitude": lng}) == expected


def test_polygon_is_closed():
    value = {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1]]}
    assert codec.normalize_value(value) == {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [0, 0]]}


def test_already_closed_polygon_is_unchanged():
    ring = [[0, 0], [0, 1], [1, 1], [0, 0]]
    assert codec.normalize_value({"__type": "Polygon", "coordinates": ring})["coordinates"] == ring


@pytest.mark.parametrize(
    ("coords", "expected"),
    [
        ([[0, 0], [1, 1], [0, 0]], (1, "GeoJSON: Loop must have at least 3 different vertices")),
        ([[0, 0], [1, 1], [1, 1], [0, 0]], (1, "GeoJSON: Loop must have at least 3 different vertices")),
        ([[0, 0], [1, 1]], (111, "Polygon must have at least 3 values")),
        ("0,0 1,1 2,2", (111, "Polygon must have at least 3 values")),
        ([[0, 0], [1, 1], [2]], (111, "This is not a valid Polygon")),
        ([[0, 0], [1, 1], ["a", 2]], (111, "This is not a valid Polygon")),
        ([[0, 0], [1, 1], [95, 2]], (107, "GeoPoint out of bounds in Polygon")),
    ],
)
def test_polygon_errors(coords, expected):
    assert _error(codec.normalize_value, {"__type": "Polygon", "coordinates": coords}) == expected


def test_bytes_base64_validation():
    assert codec.normalize_value({"__type": "Bytes", "base64": "aGVsbG8="}) == {"__type": "Bytes", "base64": "aGVsbG8="}
    for bad in ("abc", "not base64!", "", None):
        assert _error(codec.normalize_value, {"__type": "Bytes", "base64": bad}) == (111, "This is not a valid Bytes")


def test_unknown_type_111():
    assert _error(codec.normalize_value, {"__type": "Money", "amount": 3}) == (111, "This is not a valid Money")


# --- nested objects ------------------------------------------------------------------------------------


def test_nested_objects_and_arrays_normalise_recursively():
    value = {"when": {"__type": "Date", "iso": "2024-01-02T03:04:05+01:00"}, "list": [{"p": codec.pointer("A", "1")}]}
    assert codec.normalize_value(value) == {
        "when": {"__type": "Date", "iso": "2024-01-02T02:04:05.000Z"},
        "list": [{"p": {"__type": "Pointer", "className": "A", "objectId": "1"}}],
    }


@pytest.mark.parametrize("bad", [{"a$b": 1}, {"a.b": 1}, {"ok": {"$gt": 1}}, [{"x.y": 1}], {"l": [{"$k": 1}]}])
def test_nested_keys_with_dollar_or_dot_are_121(bad):
    assert _error(codec.normalize_value, bad) == (
        121, "Nested keys should not contain the '$' or '.' characters")


def test_nesting_limit():
    assert codec.MAX_NESTING == 100
    assert codec.normalize_value(_nest(100)) == _nest(100)
    assert _error(codec.normalize_value, _nest(101)) == (107, "Object is nested too deeply")
    deep_list: list = [1]
    for _ in range(100):
        deep_list = [deep_list]
    assert _error(codec.normalize_value, deep_list) == (107, "Object is nested too deeply")


def test_scalars_pass_through_and_huge_ints_become_floats():
    assert codec.normalize_value("s") == "s"
    assert codec.normalize_value(True) is True
    assert codec.normalize_value(None) is None
    assert codec.normalize_value(2**63 - 1) == 2**63 - 1
    huge = codec.normalize_value(2**63)
    assert isinstance(huge, float) and huge == float(2**63)
    assert isinstance(codec.normalize_value(-(2**63) - 1), float)


# --- type inference -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, {"type": "Boolean"}),
        (0, {"type": "Number"}),
        (1.5, {"type": "Number"}),
        ("x", {"type": "String"}),
        ([1], {"type": "Array"}),
        ({"a": 1}, {"type": "Object"}),
        (codec.date("2024-01-01T00:00:00.000Z"), {"type": "Date"}),
        ({"__type": "File", "name": "f"}, {"type": "File"}),
        ({"__type": "GeoPoint", "latitude": 0, "longitude": 0}, {"type": "GeoPoint"}),
        ({"__type": "Polygon", "coordinates": []}, {"type": "Polygon"}),
        ({"__type": "Bytes", "base64": ""}, {"type": "Bytes"}),
        (codec.pointer("_User", "u"), {"type": "Pointer", "targetClass": "_User"}),
        (codec.relation("Post"), {"type": "Relation", "targetClass": "Post"}),
        (None, None),
    ],
)
def test_type_of(value, expected):
    assert codec.type_of(value) == expected


def test_type_of_unsupported_python_value_111():
    assert _error(codec.type_of, {1, 2}) == (111, "invalid value type: set")


def test_type_to_string_and_same_type():
    assert codec.type_to_string({"type": "Pointer", "targetClass": "A"}) == "Pointer<A>"
    assert codec.type_to_string({"type": "Number"}) == "Number"
    assert codec.type_to_string(None) == "null"
    assert codec.same_type({"type": "Pointer", "targetClass": "A"}, {"type": "Pointer", "targetClass": "A"})
    assert not codec.same_type({"type": "Pointer", "targetClass": "A"}, {"type": "Pointer", "targetClass": "B"})
    assert not codec.same_type({"type": "String"}, {"type": "Number"})


# --- ACL ---------------------------------------------------------------------------------------------------


def test_validate_acl_drops_false_entries():
    acl = {"*": {"read": True, "write": False}, "u1": {"read": True, "write": True}, "role:Admin": {"write": True}}
    assert codec.validate_acl(acl) == {"*": {"read": True}, "u1": {"read": True, "write": True},
                                       "role:Admin": {"write": True}}


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "public",
        {"*": True},
        {"*": {"read": "yes"}},
        {"*": {"delete": True}},
        {"": {"read": True}},
        {"u": {"read": 1}},
    ],
)
def test_invalid_acl_123(bad):
    assert _error(codec.validate_acl, bad) == (123, "Invalid ACL.")


def test_acl_to_perms():
    acl = {"*": {"read": True}, "u1": {"read": True, "write": True}, "role:Admin": {"write": True}}
    assert codec.acl_to_perms(acl) == (["*", "u1"], ["u1", "role:Admin"])


@pytest.mark.parametrize(
    "acl",
    [
        {},
        {"*": {"read": True}},
        {"u1": {"read": True, "write": True}, "role:Admin": {"write": True}, "*": {"read": True}},
    ],
)
def test_acl_round_trip(acl):
    rperm, wperm = codec.acl_to_perms(codec.validate_acl(acl))
    assert codec.perms_to_acl(rperm, wperm) == acl


def test_perms_to_acl_none_and_partial():
    assert codec.perms_to_acl(None, None) is None
    assert codec.perms_to_acl([], []) == {}
    assert codec.perms_to_acl(["*"], None) == {"*": {"read": True}}
    assert codec.perms_to_acl(None, ["u"]) == {"u": {"write": True}}
