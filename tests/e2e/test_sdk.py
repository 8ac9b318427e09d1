"""The official Parse JS SDK (tests/js/scenario.js) against the reference and against parsectl.

Every scenario runs once per server per session (see the `sdk_report` fixture). Each test below holds a
server to explicit expectations (checked to hold on the reference, node parse-server 9.10 on PostgreSQL);
`test_scenario_matches_reference` compares parsectl's whole normalized scenario output with the reference's.
"""

from __future__ import annotations

import pytest

from tests.support.compare import assert_same

pytestmark = pytest.mark.slow

SCENARIOS = [
    "types_roundtrip",
    "save_all_destroy_all",
    "unsaved_children",
    "queries",
    "query_features",
    "relations",
    "increment_concurrency",
    "updates",
    "sdk_errors",
]


def scenario(sdk_report, server, name: str) -> dict:
    report = sdk_report(server)
    entry = report["scenarios"].get(name)
    assert entry is not None, f"scenario {name} missing from the report: {sorted(report['scenarios'])}"
    if not entry["ok"]:
        pytest.fail(f"SDK scenario {name} failed against {server.kind}: {entry['error']}\n"
                    f"--- server log ---\n{server.log_tail(3000)}")
    return entry["result"]


def err(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def ptr(cls: str, label: str) -> dict:
    return {"__type": "Pointer", "className": cls, "objectId": f"<id:{label}>"}


# --------------------------------------------------------------------------------------------
# objects of every type, saveAll/destroyAll, unsaved children

FULL_OBJECT = {
    "className": "Types",
    "objectId": "<id:full>",
    "createdAt": "<ts>",
    "updatedAt": "<ts>",
    "ACL": {"*": {"read": True}},
    "name": "full",
    "str": "héllo wörld ✓",
    "num": 42.5,
    "int": 7,
    "neg": -3,
    "zero": 0,
    "big": 9007199254740991,
    "yes": True,
    "no": False,
    "date": {"__type": "Date", "iso": "2020-01-02T03:04:05.678Z"},
    "obj": {
        "a": 1,
        "s": "x",
        "nested": {"when": {"__type": "Date", "iso": "2021-05-06T07:08:09.010Z"}, "list": [1, "two", False]},
    },
    "arr": [1, "a", True, {"k": "v"}, [2, 3]],
    "emptyArr": [],
    "emptyObj": {},
    "ptr": ptr("TypeTarget", "t1"),
    "ptrs": [ptr("TypeTarget", "t1"), ptr("TypeTarget", "t2")],
    "geo": {"__type": "GeoPoint", "latitude": 40.5, "longitude": -30.25},
    "poly": {"__type": "Polygon", "coordinates": [[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]},
    "bytes": {"__type": "Bytes", "base64": "aGVsbG8gd29ybGQ="},
}

SDK_TYPES = {
    "ACL": "object",
    "arr": "Array[number,string,boolean,object,Array[number,number]]",
    "big": "number",
    "bytes": "object",
    "date": "Date",
    "emptyArr": "Array[]",
    "emptyObj": "object",
    "geo": "GeoPoint",
    "int": "number",
    "name": "string",
    "neg": "number",
    "no": "boolean",
    "num": "number",
    "obj": "object",
    "poly": "Polygon",
    "ptr": "Object<TypeTarget>",
    "ptrs": "Array[Object<TypeTarget>,Object<TypeTarget>]",
    "str": "string",
    "yes": "boolean",
    "zero": "number",
}


def test_types_roundtrip(server, sdk_report):
    r = scenario(sdk_report, server, "types_roundtrip")
    assert_same(FULL_OBJECT, r["fetched"], "object fetched back with the SDK")
    assert_same(SDK_TYPES, r["sdkTypes"], "types the SDK decoded")
    assert r["timestampsAreDates"] is True
    assert r["ptrIsT1"] is True
    assert r["nestedDateIsDate"] is True
    # Fields set to null on create are not returned (as on the reference, PostgreSQL).
    assert_same(
        {"className": "Types", "objectId": "<id:sparse>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "sparse"},
        r["fetchedSparse"], "object saved with null fields",
    )
    # ACL public read only: a client write is refused as "not found".
    assert r["writeWithoutMaster"] == err(101, "Object not found.")
    # unset -> the field is gone.
    assert r["afterUnsetHas"] == {"str": False, "neg": False, "num": True}
    assert r["afterUnsetKeys"] == sorted(set(FULL_OBJECT) - {"className", "str", "neg"})
    # A private object (empty ACL).
    assert r["privateGetNoMaster"] == err(101, "Object not found.")
    assert r["privateGetMaster"] == {"value": "secret"}
    assert r["privateFindNoMaster"] == ["full", "sparse"]
    assert r["privateFindMaster"] == ["full", "secret", "sparse"]
    assert r["privateAcl"] == {}


def test_save_all_destroy_all(server, sdk_report):
    r = scenario(sdk_report, server, "save_all_destroy_all")
    assert r["allHaveIds"] is True
    assert r["distinctIds"] == 4
    assert r["afterSave"] == ["a", "b", "c", "d"]
    assert r["afterUpdate"] == [["a", 100], ["b", 11], ["c", 2], ["d", 3]]
    assert r["mixedBatch"] == err(111, "schema mismatch for BatchItem.n; expected Number but got String")
    assert r["afterMixed"] == ["a", "b", "c", "d", "e"], "the valid object of a failed batch is still saved"
    assert r["afterDestroy"] == ["a", "d", "e"]
    assert r["getDestroyed"] == err(101, "Object not found.")
    # destroyAll of an already deleted object: Parse.Error.AGGREGATE_ERROR holding the per-object 101.
    assert r["destroyAgain"]["error"]["code"] == 600
    assert r["destroyAgain"]["error"]["errors"] == [{"code": 101, "message": "Object not found."}]


def test_unsaved_children(server, sdk_report):
    r = scenario(sdk_report, server, "unsaved_children")
    assert r["childrenSaved"] == [True, True, True]

    def child(label):
        return {"__type": "Object", "className": "Child", "objectId": f"<id:{label}>", "createdAt": "<ts>",
                "updatedAt": "<ts>", "name": label}

    assert_same(
        {
            "className": "Parent", "objectId": "<id:p>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "p",
            "child": child("kid"), "kids": [child("twin1"), child("twin2")],
            "meta": {"favourite": ptr("Child", "twin2")},
        },
        r["fetched"], "parent fetched with include=child,kids",
    )
    assert r["childName"] == "kid"
    assert r["kidNames"] == ["twin1", "twin2"]
    assert r["childCount"] == 2


# --------------------------------------------------------------------------------------------
# queries

# Data (see seedQueryData in scenario.js): items a..h with n=1..8.
QUERY_RESULTS = {
    "equalTo": ["c"],
    "equalToString": ["c", "d", "h"],
    "equalToBool": ["a", "c", "e", "g"],
    "notEqualTo": ["a", "b", "d", "e", "f", "g", "h"],
    "notEqualToString": ["c", "d", "f", "g", "h"],
    "lessThan": ["a", "b"],
    "lessThanOrEqualTo": ["a", "b", "c"],
    "greaterThan": ["g", "h"],
    "greaterThanOrEqualTo": ["f", "g", "h"],
    "range": ["c", "d", "e"],
    "containedIn": ["a", "c", "e"],
    "containedInString": ["a", "b", "e", "f", "g"],
    "notContainedIn": ["b", "d", "f", "g", "h"],
    "containsAll": ["a", "e"],
    "containsAllSingle": ["c", "e", "g"],
    "containedBy": ["a", "b", "d", "h"],
    "exists": ["a", "c", "e", "h"],
    "doesNotExist": ["b", "d", "f", "g"],
    "existsPointer": ["a", "b", "c", "d", "e", "g", "h"],
    "doesNotExistPointer": ["f"],
    "matchesRegex": ["b"],
    "matchesRegexI": ["a", "b"],
    "matchesString": ["a"],
    "matchesDot": ["c", "e"],
    "startsWith": ["a"],
    "startsWithSpecial": ["f"],
    "endsWith": ["a"],
    "endsWithParen": ["d"],
    "contains": ["c", "e"],
    "containsSpecial": ["f"],
    "or": ["a", "g", "h"],
    "and": ["c", "d", "h"],
    "nor": ["c", "d", "f", "g"],
    "orOfAnd": ["a", "e", "g"],
    "matchesKeyInQuery": ["a", "c", "e"],
    "matchesKeyInQueryFiltered": ["c", "e"],
    "doesNotMatchKeyInQuery": ["b", "d", "f", "g", "h"],
    "matchesQuery": ["b", "c", "e", "g"],
    "matchesQueryNested": ["a", "c", "d", "g", "h"],
    "doesNotMatchQuery": ["a", "d", "h"],
    # f has no owner; the reference (PostgreSQL NOT IN) leaves it out.
    "doesNotMatchQueryMissing": ["a", "d", "h"],
    "dateGreaterThan": ["f", "g", "h"],
    "dateLessThanOrEqualTo": ["a", "b"],
    "dateEqualTo": ["c"],
    "pointerEqualTo": ["a", "d", "h"],
    "pointerNotEqualTo": ["b", "c", "e", "f", "g"],
    "pointerContainedIn": ["a", "b", "d", "e", "h"],
    "pointerArrayContainsAll": ["b", "e"],
    "orderDescending": ["h", "g", "f", "e", "d", "c", "b", "a"],
    "orderMultiKey": ["e", "b", "a", "h", "d", "c", "g", "f"],
    "orderMultiKeyString": ["f", "g", "c", "d", "h", "a", "b", "e"],
    "orderDate": ["h", "g", "f", "e", "d", "c", "b", "a"],
    "limit": ["a", "b", "c"],
    "skip": ["f", "g", "h"],
    "limitSkip": ["c", "d", "e"],
    "limitZeroish": [],
}


@pytest.mark.parametrize("query", sorted(QUERY_RESULTS))
def test_query(server, sdk_report, query):
    r = scenario(sdk_report, server, "queries")
    assert query in r, f"query {query} missing from the scenario output"
    assert r[query] == QUERY_RESULTS[query], f"{query} on {server.kind}"


def test_query_scenario_has_no_unchecked_queries(server, sdk_report):
    r = scenario(sdk_report, server, "queries")
    assert sorted(r) == sorted(QUERY_RESULTS)


def test_query_select_exclude(server, sdk_report):
    r = scenario(sdk_report, server, "query_features")
    assert r["selectKeys"] == [["createdAt", "n", "name", "objectId", "updatedAt"]] * 2
    assert_same(
        [
            {"className": "FItem", "objectId": f"<id:{n}>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": n, "n": i}
            for i, n in ((1, "a"), (2, "b"))
        ],
        r["selectValues"], "select('name','n')",
    )
    assert r["excludeKeys"] == [["createdAt", "flag", "grp", "n", "name", "objectId", "opt", "owner", "updatedAt", "when"]]
    assert r["getWithSelect"] == ["createdAt", "objectId", "title", "updatedAt"]


def test_query_include(server, sdk_report):
    r = scenario(sdk_report, server, "query_features")
    ann = {"className": "FOwner", "objectId": "<id:ann>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "ann",
           "age": 30, "num": 1}
    assert_same({**ann, "team": ptr("FTeam", "red")}, r["includeOwner"], "include('owner')")
    assert_same(
        {**ann, "team": {"__type": "Object", "className": "FTeam", "objectId": "<id:red>", "createdAt": "<ts>",
                         "updatedAt": "<ts>", "name": "red", "rank": 1}},
        r["includeDotted"], "include('owner.team')",
    )
    assert r["includeDottedTeamName"] == "red"
    assert r["includeArray"] == [["bob", 40], ["ann", 30]]
    assert r["noInclude"] == {"className": "FOwner", "objectId": "<id:ann>"}
    assert r["includeAll"] == {"owner": "cat", "owners": ["cat", "ann"]}
    assert r["includeMissingPointer"] is False
    assert r["pointerFieldTypes"] == ["Object<FOwner>"] * 5 + ["undefined"] + ["Object<FOwner>"] * 2


def test_query_count_first_get(server, sdk_report):
    r = scenario(sdk_report, server, "query_features")
    assert r["countAll"] == 8
    assert r["countWhere"] == 4
    assert r["countWithLimit"] == 8, "count ignores limit"
    assert r["countNone"] == 0
    assert r["countPointer"] == 3
    assert r["withCount"] == {"count": 3, "results": ["a", "b"]}
    assert r["first"] == "h"
    assert r["firstNone"] is None
    assert r["getMissing"] == err(101, "Object not found.")
    assert_same(
        {
            "className": "FItem", "objectId": "<id:c>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "c", "n": 3,
            "grp": "y", "title": "Banana split", "tags": ["y", "z"], "flag": True, "opt": 3,
            "when": {"__type": "Date", "iso": "2024-01-03T12:00:00.000Z"},
            "owner": ptr("FOwner", "cat"), "owners": [ptr("FOwner", "cat"), ptr("FOwner", "ann")],
        },
        r["get"], "query.get",
    )


def test_query_each_find_all(server, sdk_report):
    r = scenario(sdk_report, server, "query_features")
    assert r["each"] == ["b", "c", "d", "e", "f", "g", "h"]
    assert r["eachCount"] == 7, "each() must visit every object exactly once"
    assert r["eachBatchSizes"] == [3, 3, 2]
    assert r["findAll"] == ["a", "b", "c", "d", "e", "f", "g", "h"]


# --------------------------------------------------------------------------------------------
# relations, increments, errors


def test_relations(server, sdk_report):
    r = scenario(sdk_report, server, "relations")
    assert r["relationQuery"] == ["m1", "m2", "m3"]
    assert r["afterRemove"] == ["m1", "m3", "m4"]
    assert r["relationQueryFiltered"] == ["m3", "m4"]
    assert r["relationCount"] == 3
    assert r["g2Members"] == ["m3"]
    assert r["groupsWithM3"] == ["g1", "g2"]
    assert r["groupsWithM2"] == []
    assert r["groupsWithM1orM3"] == ["g1", "g2"]
    assert r["groupsMatchingMembers"] == ["g1"]
    assert r["relationType"] == "Relation"
    assert r["relationOnUnknownField"] == {"value": []}
    assert_same(
        {"className": "RGroup", "objectId": "<id:g1>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "g1",
         "members": {"__type": "Relation", "className": "RMember"}},
        r["fetched"], "object with a relation field",
    )


def test_increment_concurrency(server, sdk_report):
    r = scenario(sdk_report, server, "increment_concurrency")
    assert r["final"] == {"n": 50, "m": 0}, "50 concurrent increments must all count"
    # Each save answers the value its own increment produced: a permutation of 1..50.
    assert r["returnedN"] == list(range(1, 51))
    assert r["returnedM"] == list(range(0, 100, 2))
    assert r["incrementMissing"] == 5
    assert r["incrementOnCreate"] == 3


def test_updates(server, sdk_report):
    r = scenario(sdk_report, server, "updates")
    assert_same(
        {
            "className": "Upd", "objectId": "<id:u>", "createdAt": "<ts>", "updatedAt": "<ts>", "name": "u",
            "n": 2.5, "s": "b", "flag": True, "arr": [3], "added": "new field",
            "obj": {"b": {"c": 2}, "d": [{"__type": "Date", "iso": "2022-02-02T02:02:02.002Z"}]},
            "when": {"__type": "Date", "iso": "2023-03-03T03:03:03.003Z"},
            "geo": {"__type": "GeoPoint", "latitude": -10.5, "longitude": 170.25},
            "ptr": ptr("UpdTarget", "y"),
        },
        r["afterSet"], "object after updating every field (and unsetting one)",
    )
    # Array operators (compared as sorted multisets: the reference may reorder on PostgreSQL).
    assert r["afterAdd"] == [3, 4]
    assert r["afterAddUniqueExisting"] == [3, 4]
    assert r["afterAddAllUnique"] == [3, 4, 5, 6]
    assert r["afterRemove"] == [3, 5, 6]
    assert r["afterAddAllDuplicates"] == [3, 5, 6, 7, 7]
    assert r["afterRemoveAll"] == [3, 5, 6], "Remove drops every occurrence"
    assert r["wrongType"] == err(111, "schema mismatch for Upd.n; expected Number but got String")
    assert r["ptrAfterChildSave"] == "unsaved-but-saved-first"
    assert r["nAfterIncrement"] == 3


def test_sdk_errors(server, sdk_report):
    r = scenario(sdk_report, server, "sdk_errors")
    assert r["newClassWithoutMaster"] == err(119, "Permission denied")
    assert r["findUnknownClassWithoutMaster"] == err(119, "Permission denied")
    assert r["findUnknownClassWithMaster"] == {"value": 0}
    assert r["schemaMismatch"] == err(111, "schema mismatch for ErrKnown.n; expected Number but got String")
    assert r["getMissing"] == err(101, "Object not found.")
    assert r["destroyMissing"] == err(101, "Object not found.")


def test_report_covers_every_scenario(server, sdk_report):
    report = sdk_report(server)
    assert sorted(report["scenarios"]) == sorted(SCENARIOS)
    assert report["sdkVersion"].startswith("js8.")


# --------------------------------------------------------------------------------------------
# differential: parsectl's normalized scenario output == the reference's


@pytest.mark.reference
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_matches_reference(name, reference_server, any_parsectl_server, sdk_report):
    expected = sdk_report(reference_server)["scenarios"][name]
    actual = sdk_report(any_parsectl_server)["scenarios"][name]
    assert expected["ok"], f"the reference failed scenario {name}: {expected.get('error')}"
    if not actual["ok"]:
        pytest.fail(f"parsectl failed scenario {name}: {actual['error']}")
    assert_same(expected["result"], actual["result"], f"parsectl's {name} output", "the reference's")
