"""The where parser (to a node tree) and the find options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parsectl.model import codec
from parsectl.model import query as q
from parsectl.model.errors import ParseError


def _error(where, *, master=False):
    with pytest.raises(ParseError) as info:
        q.parse_where(where, master=master)
    return info.value.code, info.value.message


def _opts_error(params, **kwargs):
    with pytest.raises(ParseError) as info:
        q.parse_find_options(params, master=False, **kwargs)
    return info.value.code, info.value.message


def _iso_age(node: q.Node) -> float:
    """Seconds between now and the Date value of a Compare node (positive = past)."""
    assert isinstance(node, q.Compare)
    return (datetime.now(UTC) - codec.parse_iso(node.value["iso"])).total_seconds()


# --- nodes -------------------------------------------------------------------------------------------


def test_empty_and_none_where_match_all():
    assert isinstance(q.parse_where(None), q.MatchAll)
    assert q.parse_where({}) == q.And([])


def test_plain_equality():
    assert q.parse_where({"score": 5}) == q.Compare("score", "eq", 5)
    assert q.parse_where({"name": None}) == q.Compare("name", "eq", None)


def test_equality_values_are_normalised():
    node = q.parse_where({"when": {"__type": "Date", "iso": "2024-01-02T03:04:05+01:00"}})
    assert node == q.Compare("when", "eq", {"__type": "Date", "iso": "2024-01-02T02:04:05.000Z"})
    ptr = {"__type": "Pointer", "className": "_User", "objectId": "u1", "extra": True}
    assert q.parse_where({"owner": ptr}) == q.Compare("owner", "eq", codec.pointer("_User", "u1"))


def test_several_keys_are_anded():
    assert q.parse_where({"a": 1, "b": "x"}) == q.And([q.Compare("a", "eq", 1), q.Compare("b", "eq", "x")])


@pytest.mark.parametrize(
    ("op", "name"), [("$lt", "lt"), ("$lte", "lte"), ("$gt", "gt"), ("$gte", "gte"), ("$ne", "ne"), ("$eq", "eq")]
)
def test_comparisons(op, name):
    assert q.parse_where({"n": {op: 3}}) == q.Compare("n", name, 3)


def test_range_is_two_nodes():
    assert q.parse_where({"n": {"$gt": 1, "$lt": 9}}) == q.And([q.Compare("n", "gt", 1), q.Compare("n", "lt", 9)])


def test_in_nin():
    assert q.parse_where({"n": {"$in": [1, None]}}) == q.In("n", [1, None])
    assert q.parse_where({"n": {"$nin": ["a"]}}) == q.In("n", ["a"], negate=True)
    assert q.parse_where({"p": {"$in": [codec.pointer("A", "1")]}}) == q.In("p", [codec.pointer("A", "1")])


def test_all_containedby_exists():
    assert q.parse_where({"t": {"$all": ["a", "b"]}}) == q.All("t", ["a", "b"])
    assert q.parse_where({"t": {"$containedBy": [1, 2]}}) == q.ContainedBy("t", [1, 2])
    assert q.parse_where({"t": {"$exists": False}}) == q.Exists("t", False)


def test_all_with_regexes_is_an_and_of_regexes():
    node = q.parse_where({"t": {"$all": [{"$regex": "^\\Qa\\E"}, {"$regex": "^b", "$options": "i"}]}})
    assert node == q.And([q.Regex("t", "^\\Qa\\E", ""), q.Regex("t", "^b", "i")])


def test_regex_with_options():
    assert q.parse_where({"s": {"$regex": "^ab", "$options": "im"}}) == q.Regex("s", "^ab", "im")
    assert q.parse_where({"s": {"$regex": "x"}}) == q.Regex("s", "x", "")


def test_or_and_nor():
    assert q.parse_where({"$or": [{"a": 1}, {"b": 2}]}) == q.Or([q.Compare("a", "eq", 1), q.Compare("b", "eq", 2)])
    assert q.parse_where({"$and": [{"a": 1}]}) == q.And([q.Compare("a", "eq", 1)])
    assert q.parse_where({"$nor": [{"a": 1}]}) == q.Not(q.Or([q.Compare("a", "eq", 1)]))
    assert q.parse_where({"$or": []}) == q.MatchNone()


def test_related_to():
    node = q.parse_where({"$relatedTo": {"object": codec.pointer("Team", "t1"), "key": "members"}})
    assert node == q.RelatedTo(codec.pointer("Team", "t1"), "members")


def test_in_query_and_select_nodes():
    node = q.parse_where({"p": {"$inQuery": {"className": "Post", "where": {"n": 1}}}})
    assert node == q.InQuery("p", "Post", q.Compare("n", "eq", 1))
    node = q.parse_where({"p": {"$notInQuery": {"className": "Post", "where": {}}}})
    assert node == q.InQuery("p", "Post", q.And([]), negate=True)
    node = q.parse_where({"h": {"$select": {"query": {"className": "Team", "where": {"w": True}}, "key": "city"}}})
    assert node == q.Select("h", "Team", q.Compare("w", "eq", True), "city")
    node = q.parse_where({"h": {"$dontSelect": {"query": {"className": "Team"}, "key": "city"}}})
    assert node == q.Select("h", "Team", q.And([]), "city", negate=True)


def test_dotted_key_is_a_field_path():
    assert q.parse_where({"meta.level": {"$gte": 2}}) == q.Compare("meta.level", "gte", 2)


def test_typed_value_is_equality_not_constraint():
    geo = {"__type": "GeoPoint", "latitude": 1, "longitude": 2}
    assert q.parse_where({"g": geo}) == q.Compare("g", "eq", geo)


def test_mixed_plain_key_and_operator():
    assert q.parse_where({"o": {"$exists": True, "k": 1}}) == q.And(
        [q.Exists("o", True), q.Compare("o", "eq", {"k": 1})])


def test_mixed_plain_keys_merge_into_one_equality():
    node = q.parse_where({"o": {"$exists": True, "k": 1, "j": 2}})
    assert node == q.And([q.Exists("o", True), q.Compare("o", "eq", {"k": 1, "j": 2})])


# --- errors ---------------------------------------------------------------------------------------


def test_where_not_an_object_107():
    assert _error([1]) == (107, "where parameter is not valid JSON")


@pytest.mark.parametrize("key", ["$or", "$and"])
def test_or_and_not_array_102(key):
    assert _error({key: {"a": 1}}) == (102, f"Bad {key} format - use an array value.")


def test_nor_errors():
    assert _error({"$nor": {"a": 1}}) == (102, "Bad $nor format - use an array value.")
    assert _error({"$nor": []}) == (102, "Bad $nor format - use an array of at least 1 value.")


def test_unknown_constraint_107():
    assert _error({"f": {"$foo": 1}}) == (107, "bad constraint: $foo")
    assert _error({"$foo": 1}, master=True) == (107, "bad constraint: $foo")


@pytest.mark.parametrize("op", ["$in", "$nin"])
def test_in_not_array_107(op):
    assert _error({"f": {op: 1}}) == (107, f"bad {op} value")


def test_other_operator_argument_errors():
    assert _error({"f": {"$all": "x"}}) == (107, "bad $all value")
    assert _error({"f": {"$containedBy": {}}}) == (107, "bad $containedBy: should be an array")
    assert _error({"f": {"$exists": "yes"}}) == (107, "bad $exists value")
    assert _error({"f": {"$regex": 5}}) == (107, "bad regex: 5")
    assert _error({"f": {"$regex": "("}}) == (102, "Invalid regular expression: (")
    assert _error({"f": {"$options": "i"}}) == (107, "bad $options: $regex is required")
    assert _error({"f": {"$all": [{"$regex": "a"}, "b"]}})[0] == 107


def test_acl_query_102():
    assert _error({"ACL": {"*": {"read": True}}}) == (102, "Cannot query on ACL.")
    assert _error({"ACL": 1}, master=True) == (102, "Cannot query on ACL.")


@pytest.mark.parametrize("key", ["1abc", "_private", "a-b", "$foo", "a b"])
def test_bad_key_name_105_for_non_master(key):
    assert _error({key: 1}) == (105, f"Invalid key name: {key}")


def test_master_may_use_any_key_name():
    assert q.parse_where({"_rperm": {"$in": ["*"]}}, master=True) == q.In("_rperm", ["*"])


@pytest.mark.parametrize("options", ["q", "ig", "I", "i m"])
def test_bad_regex_options_102(options):
    assert _error({"s": {"$regex": "a", "$options": options}}) == (102, f"Bad $options value for query: {options}")


@pytest.mark.parametrize(
    ("op", "arg"),
    [
        ("$select", {"query": {"className": "A"}}),
        ("$select", {"query": {"className": "A"}, "key": "k", "extra": 1}),
        ("$select", {"query": {"where": {}}, "key": "k"}),
        ("$select", {"query": "A", "key": "k"}),
        ("$dontSelect", {"query": {"className": "A"}, "key": 5}),
        ("$inQuery", {"where": {}}),
        ("$inQuery", {"className": "A"}),
        ("$notInQuery", []),
    ],
)
def test_improper_subqueries_102(op, arg):
    assert _error({"f": {op: arg}}) == (102, f"improper usage of {op}")


def test_bad_related_to_107():
    assert _error({"$relatedTo": {"object": "x", "key": "k"}}) == (107, "improper usage of $relatedTo")
    assert _error({"$relatedTo": {"object": codec.pointer("A", "1")}}) == (107, "improper usage of $relatedTo")


def test_geo_and_text_operators_are_validated_107():
    # accepted (tests/unit/test_geo_text.py, tests/server/test_geo_text.py); bad values are 107 as in node
    assert _error({"g": {"$nearSphere": {"__type": "GeoPoint", "latitude": 91, "longitude": 0}}}) == (
        107, "GeoPoint latitude out of bounds: 91 > 90.0.")
    assert _error({"g": {"$within": {"$box": []}}}) == (107, "malformatted $within arg")


def test_nesting_depth_limit():
    where: dict = {"a": 1}
    for _ in range(21):
        where = {"$and": [where]}
    assert _error(where) == (102, "Query is nested too deeply")
    ok: dict = {"a": 1}
    for _ in range(20):
        ok = {"$and": [ok]}
    assert isinstance(q.parse_where(ok), q.And)


def test_nested_value_errors_propagate():
    assert _error({"o": {"k": {"$bad": 1}}}) == (121, "Nested keys should not contain the '$' or '.' characters")
    assert _error({"d": {"__type": "Date", "iso": "nope"}}) == (111, "This is not a valid Date")


# --- $relativeTime -------------------------------------------------------------------------------------


def test_relative_time_past_and_future():
    past = q.parse_where({"d": {"$lt": {"$relativeTime": "3 days ago"}}})
    assert past.op == "lt"
    assert abs(_iso_age(past) - 3 * 86400) < 5
    future = q.parse_where({"d": {"$gte": {"$relativeTime": "in 2 hours 30 mins"}}})
    assert abs(_iso_age(future) + 2.5 * 3600) < 5
    now = q.parse_where({"d": {"$gt": {"$relativeTime": "now"}}})
    assert abs(_iso_age(now)) < 5


@pytest.mark.parametrize(
    ("phrase", "unit_seconds"),
    [("1 yr ago", 31536000), ("2 weeks ago", 2 * 604800), ("1 day ago", 86400), ("5 hrs ago", 5 * 3600),
     ("10 minutes ago", 600), ("30 secs ago", 30), ("1.5 hours ago", 5400)],
)
def test_relative_time_units(phrase, unit_seconds):
    iso = q.relative_time(phrase)
    age = (datetime.now(UTC) - codec.parse_iso(iso)).total_seconds()
    assert abs(age - unit_seconds) < 5


def test_relative_time_errors():
    assert _error({"d": {"$eq": {"$relativeTime": "1 day ago"}}}) == (
        107, "$relativeTime can only be used with the $lt, $lte, $gt, and $gte operators")
    assert _error({"d": {"$ne": {"$relativeTime": "1 day ago"}}})[0] == 107
    assert _error({"d": {"$lt": {"$relativeTime": "in 1 day ago"}}}) == (107, "bad $relativeTime ($relativeTime) value")
    assert _error({"d": {"$lt": {"$relativeTime": "1 day"}}}) == (107, "bad $relativeTime ($relativeTime) value")
    assert _error({"d": {"$lt": {"$relativeTime": "3 fortnights ago"}}}) == (107, "bad $relativeTime (fortnight) value")
    assert _error({"d": {"$lt": {"$relativeTime": "x days ago"}}}) == (107, "bad $relativeTime (x) value")
    assert _error({"d": {"$lt": {"$relativeTime": 5}}}) == (107, "bad $relativeTime ($relativeTime) value")
    assert _error({"d": {"$lt": {"$relativeTime": "3 ago"}}}) == (107, "bad $relativeTime ($relativeTime) value")


def test_relative_time_result_is_canonical_iso():
    iso = q.relative_time("1 day ago")
    assert iso == codec.normalize_iso(iso)
    expected = datetime.now(UTC) - timedelta(days=1)
    assert abs((codec.parse_iso(iso) - expected).total_seconds()) < 5


# --- find options ---------------------------------------------------------------------------------------


def test_find_option_defaults():
    opts = q.parse_find_options({}, master=False)
    assert opts.limit == 100
    assert opts.skip == 0
    assert opts.order == []
    assert opts.keys is None
    assert opts.include == [] and not opts.include_all
    assert opts.count is False
    assert isinstance(opts.where, q.MatchAll)


def test_unknown_parameter_102():
    assert _opts_error({"x": 1}) == (102, "Invalid parameter for query: x")
    assert _opts_error({"where": {}, "sort": "a"}) == (102, "Invalid parameter for query: sort")
    with pytest.raises(ParseError) as info:
        q.parse_find_options({"where": {}, "skip": 1}, master=False, allowed=q.GET_PARAMS)
    assert (info.value.code, info.value.message) == (102, "Invalid parameter for query: where")


def test_all_documented_parameters_are_accepted():
    params = {name: None for name in q.FIND_PARAMS if name not in ("limit", "skip")}
    params["where"] = {}
    q.parse_find_options(params, master=False)


def test_where_as_json_string():
    opts = q.parse_find_options({"where": '{"score": {"$gt": 100}}'}, master=False)
    assert opts.where == q.Compare("score", "gt", 100)
    assert _opts_error({"where": "{bad"}) == (107, "where parameter is not valid JSON")


def test_order_parsing():
    opts = q.parse_find_options({"order": "-score, name,,-createdAt"}, master=False)
    assert opts.order == [q.SortKey("score", True), q.SortKey("name", False), q.SortKey("createdAt", True)]
    opts = q.parse_find_options({"order": ["a", "-b"]}, master=False)
    assert opts.order == [q.SortKey("a"), q.SortKey("b", True)]
    assert _opts_error({"order": "-authData.facebook.id"}) == (105, "Cannot sort by authData.facebook.id")


def test_keys_exclude_include_lists():
    opts = q.parse_find_options({"keys": "a, b.c", "excludeKeys": "x,y", "include": "p,q.r"}, master=False)
    assert opts.keys == ["a", "b.c"]
    assert opts.exclude_keys == ["x", "y"]
    assert opts.include == ["p", "q.r"]
    assert opts.include_all is False
    assert q.parse_find_options({"keys": ""}, master=False).keys == []


def test_include_star_and_include_all():
    opts = q.parse_find_options({"include": "*,p"}, master=False)
    assert opts.include_all is True and opts.include == ["p"]
    assert q.parse_find_options({"includeAll": True}, master=False).include_all is True


def test_limit_and_skip():
    assert q.parse_find_options({"limit": 10}, master=False).limit == 10
    assert q.parse_find_options({"limit": "25"}, master=False).limit == 25
    assert q.parse_find_options({"limit": 0}, master=False).limit == 0
    assert q.parse_find_options({"limit": 7.0}, master=False).limit == 7
    assert q.parse_find_options({}, master=False, default_limit=30).limit == 30
    assert q.parse_find_options({"skip": "5"}, master=False).skip == 5
    assert _opts_error({"limit": "ten"}) == (102, "Invalid parameter for query: limit")
    assert _opts_error({"limit": 2.5}) == (102, "Invalid parameter for query: limit")
    assert _opts_error({"skip": -1}) == (102, "Invalid parameter for query: skip")
    assert _opts_error({"skip": [1]}) == (102, "Invalid parameter for query: skip")


def test_max_limit_caps_silently():
    assert q.parse_find_options({"limit": 5000}, master=False, max_limit=1000).limit == 1000
    assert q.parse_find_options({"limit": 50}, master=False, max_limit=1000).limit == 50
    assert q.parse_find_options({}, master=False, max_limit=20).limit == 20
    assert q.parse_find_options({"limit": 5000}, master=False).limit == 5000


@pytest.mark.parametrize(("value", "expected"), [(1, True), ("1", True), (True, True), (0, False), ("0", False),
                                                 ("false", False), (None, False)])
def test_count(value, expected):
    assert q.parse_find_options({"count": value}, master=False).count is expected


def test_where_errors_surface_from_find_options():
    assert _opts_error({"where": {"ACL": 1}}) == (102, "Cannot query on ACL.")
    assert _opts_error({"where": {"$or": 1}}) == (102, "Bad $or format - use an array value.")
