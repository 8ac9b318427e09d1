"""Geo ($nearSphere, $within, $geoWithin, $geoIntersects) and full-text ($text, $score) queries, in process,
on every database. Validation errors follow parse-server 9.10 (MongoTransform / PostgresStorageAdapter).

SecantusDB (the MongoDB test server) lacks parts of MongoDB's geo and text support: it has no ``$text``
(nor text indexes), does not order ``$nearSphere`` results by distance, and leaves points on the edge of
a ``$box``/``$polygon`` out. Those tests skip there only, and run against a real MongoDB when
PARSECTL_TEST_MONGODB_URI is set.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from tests.server.conftest import Client, make_client
from tests.support.mongo import ENV_URI


def gp(lat: float, lng: float) -> dict:
    return {"__type": "GeoPoint", "latitude": lat, "longitude": lng}


def square(lat: float, lng: float, half: float) -> dict:
    return {"__type": "Polygon", "coordinates": [[lat - half, lng - half], [lat - half, lng + half],
                                                 [lat + half, lng + half], [lat + half, lng - half]]}


PLACES = {
    "SF": (37.7749, -122.4194, "Fog, cable cars and great coffee shops"),
    "Oakland": (37.8044, -122.2712, "Coffee roasters by the lake"),
    "SanJose": (37.3382, -121.8863, "Silicon valley startups"),
    "Sacramento": (38.5816, -121.4944, "The state capital, farm to fork"),
    "LA": (34.0522, -118.2437, "Movies, beaches and a café culture"),
    "NYC": (40.7128, -74.0060, "coffee, coffee and more coffee"),
    "Tokyo": (35.6762, 139.6503, "Ramen and trains"),
    "Suva": (-18.1416, 178.4419, "Islands across the date line"),
}
SF = gp(37.7749, -122.4194)


def on_secantus(database_uri: str) -> bool:
    return database_uri.startswith("mongodb") and not os.environ.get(ENV_URI)


def skip_on_secantus(database_uri: str, reason: str) -> None:
    if on_secantus(database_uri):
        pytest.skip(f"SecantusDB {reason}; runs against a real MongoDB with {ENV_URI}")


@pytest.fixture
def places(client: Client) -> Client:
    for name, (lat, lng, text) in PLACES.items():
        body = {"name": name, "location": gp(lat, lng), "text": text, "area": square(lat, lng, 0.2)}
        r = client.request("POST", "/classes/Place", json=body, master=True)
        assert r.status_code == 201, r.text
    r = client.request("POST", "/classes/Place", json={"name": "Nowhere"}, master=True)
    assert r.status_code == 201, r.text
    return client


def find(client: Client, where: dict, **params: object) -> dict:
    query = {"where": json.dumps(where), **{k: str(v) for k, v in params.items()}}
    r = client.request("GET", "/classes/Place", params=query)
    assert r.status_code == 200, r.text
    return r.json()


def names(client: Client, where: dict, **params: object) -> list[str]:
    return [o["name"] for o in find(client, where, **params)["results"]]


# --- $nearSphere -------------------------------------------------------------------------------------------


def test_near_sorts_nearest_first(places: Client, database_uri: str) -> None:
    skip_on_secantus(database_uri, "does not order $nearSphere results by distance")
    assert names(places, {"location": {"$nearSphere": SF}}, limit=5) == ["SF", "Oakland", "SanJose", "Sacramento",
                                                                          "LA"]
    assert names(places, {"location": {"$nearSphere": gp(35.0, 139.0)}}, limit=1) == ["Tokyo"]
    assert names(places, {"location": {"$nearSphere": SF}}, limit=2, skip=2) == ["SanJose", "Sacramento"]


@pytest.mark.parametrize(("limit", "expected"), [
    ({"$maxDistanceInKilometers": 100}, {"SF", "Oakland", "SanJose"}),
    ({"$maxDistanceInMiles": 100}, {"SF", "Oakland", "SanJose", "Sacramento"}),  # 161 km
    ({"$maxDistanceInRadians": 0.01}, {"SF", "Oakland"}),  # 64 km
    ({"$maxDistance": 600 / 6371}, {"SF", "Oakland", "SanJose", "Sacramento", "LA"}),
    ({"$maxDistance": 0}, {"SF"}),
    # parse-server applies the spellings in reverse alphabetical order; the last one wins
    ({"$maxDistance": 0.01, "$maxDistanceInKilometers": 1000}, {"SF", "Oakland"}),
    ({"$maxDistanceInKilometers": 100, "$maxDistanceInMiles": 1000}, {"SF", "Oakland", "SanJose"}),
])
def test_near_max_distance(places: Client, database_uri: str, limit: dict, expected: set[str]) -> None:
    where = {"location": {"$nearSphere": SF, **limit}}
    found = names(places, where)
    assert set(found) == expected
    if not on_secantus(database_uri):
        near = ["SF", "Oakland", "SanJose", "Sacramento", "LA"]
        assert found == [n for n in near if n in expected]
    assert find(places, where, count=1, limit=0)["count"] == len(expected)


def test_near_with_an_order_uses_that_order(places: Client) -> None:
    where = {"location": {"$nearSphere": SF, "$maxDistanceInKilometers": 200}}
    assert names(places, where, order="name") == ["Oakland", "SF", "Sacramento", "SanJose"]
    assert names(places, where, order="-name") == ["SanJose", "Sacramento", "SF", "Oakland"]
    assert names(places, where, order="name", limit=2, skip=1) == ["SF", "Sacramento"]


def test_near_count_and_unbounded(places: Client) -> None:
    body = find(places, {"location": {"$nearSphere": SF}}, count=1)
    assert body["count"] == 8 and len(body["results"]) == 8  # every object with a location
    assert "Nowhere" not in [o["name"] for o in body["results"]]


def test_radii_of_half_the_globe_or_more_take_every_point(places: Client) -> None:
    for where in [{"location": {"$nearSphere": SF, "$maxDistance": 10}},
                  {"location": {"$geoWithin": {"$centerSphere": [SF, 4]}}},
                  {"location": {"$geoWithin": {"$centerSphere": [SF, "Infinity"]}}}]:
        assert len(names(places, where)) == 8, where
        assert find(places, where, count=1, limit=0)["count"] == 8, where


def test_near_across_the_antimeridian(places: Client) -> None:
    where = {"location": {"$nearSphere": gp(-18.1416, -179.5), "$maxDistanceInKilometers": 300}}
    assert names(places, where) == ["Suva"]
    assert names(places, {"location": {"$geoWithin": {"$centerSphere": [[-179.5, -18.1416], 300 / 6371]}}}) == [
        "Suva"]


def test_near_inside_or_and_with_other_constraints(places: Client) -> None:
    where = {"$or": [{"location": {"$nearSphere": SF, "$maxDistanceInKilometers": 20}}, {"name": "Tokyo"}]}
    assert sorted(names(places, where)) == ["Oakland", "SF", "Tokyo"]
    where = {"location": {"$nearSphere": SF, "$maxDistanceInKilometers": 200}, "name": {"$ne": "SF"}}
    assert set(names(places, where)) == {"Oakland", "SanJose", "Sacramento"}


def test_geo_operators_on_a_field_of_another_type_match_nothing(places: Client) -> None:
    assert names(places, {"name": {"$nearSphere": SF}}) == []
    assert names(places, {"name": {"$geoWithin": {"$centerSphere": [SF, 1]}}}) == []
    assert names(places, {"location": {"$geoIntersects": {"$point": SF}}}) == []
    assert names(places, {"missing": {"$within": {"$box": [gp(0, 0), gp(1, 1)]}}}) == []


# --- $within $box, $geoWithin $polygon / $centerSphere, $geoIntersects ----------------------------------------


def test_within_box(places: Client) -> None:
    sw, ne = gp(33, -123), gp(39, -118)
    expected = ["LA", "Oakland", "SF", "Sacramento", "SanJose"]
    assert names(places, {"location": {"$within": {"$box": [sw, ne]}}}, order="name") == expected
    # corners in the other order give the same rectangle
    assert names(places, {"location": {"$within": {"$box": [ne, sw]}}}, order="name") == expected


def test_within_box_does_not_wrap_the_antimeridian(places: Client) -> None:
    # parse-server (PostgreSQL's box type) takes the rectangle between the two longitudes, never the
    # short way across 180°: a south-west corner at 170 and a north-east corner at -170 cover 340°.
    where = {"location": {"$within": {"$box": [gp(-20, 170), gp(-10, -170)]}}}
    assert names(places, where) == []
    where = {"location": {"$within": {"$box": [gp(-20, 170), gp(-10, 180)]}}}
    assert names(places, where) == ["Suva"]


def test_box_and_polygon_edges_are_inside(places: Client, database_uri: str) -> None:
    skip_on_secantus(database_uri, "leaves points on the edge of a $box or $polygon out (MongoDB keeps them)")
    corner = PLACES["SF"][:2]
    box = [gp(corner[0] - 1, corner[1] - 1), gp(*corner)]
    assert names(places, {"location": {"$within": {"$box": box}}}) == ["SF"]
    lat, lng = corner
    triangle = [[lng, lat], [lng - 1, lat - 1], [lng - 1, lat]]
    assert names(places, {"location": {"$geoWithin": {"$polygon": triangle}}}) == ["SF"]


BAY = [(37.0, -123.0), (37.0, -121.5), (38.0, -121.5), (38.0, -123.0)]  # (lat, lng)


@pytest.mark.parametrize("polygon", [
    [gp(lat, lng) for lat, lng in BAY],
    [[lng, lat] for lat, lng in BAY],  # parse-server reads a pair as [longitude, latitude]
    {"__type": "Polygon", "coordinates": [[lng, lat] for lat, lng in BAY]},  # the same, in a Polygon object
    [gp(lat, lng) for lat, lng in [*BAY, BAY[0]]],  # a closed ring
])
def test_within_polygon(places: Client, polygon: object) -> None:
    assert names(places, {"location": {"$geoWithin": {"$polygon": polygon}}}, order="name") == [
        "Oakland", "SF", "SanJose"]


def test_within_polygon_concave(places: Client) -> None:
    # an L shape around SF and Sacramento that leaves out Oakland's corner and San Jose
    shape = [[-123, 37.7], [-122.35, 37.7], [-122.35, 38.0], [-121.0, 38.0], [-121.0, 39.0], [-123, 39.0]]
    assert names(places, {"location": {"$geoWithin": {"$polygon": shape}}}, order="name") == ["SF", "Sacramento"]


@pytest.mark.parametrize("center", [SF, [-122.4194, 37.7749]])
def test_within_center_sphere(places: Client, center: object) -> None:
    where = {"location": {"$geoWithin": {"$centerSphere": [center, 100 / 6371]}}}
    assert names(places, where, order="name") == ["Oakland", "SF", "SanJose"]
    assert find(places, where, count=1, limit=0)["count"] == 3


def test_geo_intersects(places: Client) -> None:
    assert names(places, {"area": {"$geoIntersects": {"$point": gp(37.9, -122.35)}}}, order="name") == [
        "Oakland", "SF"]
    assert names(places, {"area": {"$geoIntersects": {"$point": gp(35.7, 139.7)}}}) == ["Tokyo"]
    assert names(places, {"area": {"$geoIntersects": {"$point": gp(0, 0)}}}) == []


# --- $text ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("search", "expected"), [
    ({"$term": "coffee"}, {"SF", "Oakland", "NYC"}),
    ({"$term": "COFFEE"}, {"SF", "Oakland", "NYC"}),  # case-insensitive
    ({"$term": "shop"}, {"SF"}),  # stemmed: shops
    ({"$term": "roaster startups"}, {"Oakland", "SanJose"}),  # any of the words
    ({"$term": '"coffee shops"'}, {"SF"}),  # a phrase
    ({"$term": "coffee -lake"}, {"SF", "NYC"}),  # a negation
    ({"$term": "cafe"}, {"LA"}),  # diacritic-insensitive
    ({"$term": "cafe", "$diacriticSensitive": True}, set()),
    ({"$term": "café", "$diacriticSensitive": True}, {"LA"}),
    ({"$term": "Coffee", "$caseSensitive": True}, {"Oakland"}),
    ({"$term": "ramen", "$language": "none"}, {"Tokyo"}),
    ({"$term": "ramen", "$language": "es"}, {"Tokyo"}),
    ({"$term": "nothinglikethis"}, set()),
    ({"$term": "the"}, set()),  # an English stop word matches nothing
    ({"$term": "the lake"}, {"Oakland"}),
])
def test_text(places: Client, database_uri: str, search: dict, expected: set[str]) -> None:
    skip_on_secantus(database_uri, "has no $text operator nor text indexes")
    where = {"text": {"$text": {"$search": search}}}
    assert set(names(places, where)) == expected
    assert find(places, where, count=1, limit=0)["count"] == len(expected)


def test_text_score(places: Client, database_uri: str) -> None:
    skip_on_secantus(database_uri, "has no $text operator nor text indexes")
    where = {"text": {"$text": {"$search": {"$term": "coffee"}}}}
    results = find(places, where, order="$score", keys="name,$score")["results"]
    assert [o["name"] for o in results][0] == "NYC"  # three times the word
    scores = [o["score"] for o in results]
    assert all(isinstance(s, int | float) and s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    assert "text" not in results[0] and {"objectId", "name", "score"} <= set(results[0])
    # without $score in keys, no score field; a real "score" field is left alone
    assert all("score" not in o for o in find(places, where)["results"])
    assert [o["name"] for o in find(places, where, order="-$score")["results"]][0] == "NYC"


def test_text_on_a_field_of_another_type_matches_nothing(places: Client) -> None:
    assert names(places, {"location": {"$text": {"$search": {"$term": "coffee"}}}}) == []


# --- validation (the query is refused before any database sees it) ----------------------------------------


@pytest.fixture(scope="module")
def sqlite_client(tmp_path_factory: pytest.TempPathFactory) -> Client:
    path: Path = tmp_path_factory.mktemp("geo") / "parse.db"
    c = make_client(f"sqlite:///{path}")
    r = c.request("POST", "/classes/Place", json={"name": "x", "location": gp(1, 1), "text": "x"}, master=True)
    assert r.status_code == 201, r.text
    yield c
    c.close()


BAD = [
    ({"$nearSphere": gp(91, 0)}, "GeoPoint latitude out of bounds: 91 > 90.0."),
    ({"$nearSphere": gp(-90.5, 0)}, "GeoPoint latitude out of bounds: -90.5 < -90.0."),
    ({"$nearSphere": gp(0, 181)}, "GeoPoint longitude out of bounds: 181 > 180.0."),
    ({"$nearSphere": gp(0, -181)}, "GeoPoint longitude out of bounds: -181 < -180.0."),
    ({"$nearSphere": {"__type": "GeoPoint", "latitude": "1", "longitude": 2}},
     "GeoPoint latitude and longitude must be valid numbers"),
    ({"$nearSphere": [1, 2]}, "bad $nearSphere value; it should be a GeoPoint"),
    ({"$nearSphere": SF, "$maxDistance": -1}, "bad $maxDistance value; it should be a number of at least 0"),
    ({"$nearSphere": SF, "$maxDistanceInKilometers": "10"},
     "bad $maxDistanceInKilometers value; it should be a number of at least 0"),
    ({"$maxDistance": 1}, "bad $maxDistance: it needs $nearSphere"),
    ({"$within": {"$box": [SF]}}, "malformatted $within arg"),
    ({"$within": {"$box": [SF, SF, SF]}}, "malformatted $within arg"),
    ({"$within": {"$polygon": [SF, SF, SF]}}, "malformatted $within arg"),
    ({"$within": {"$box": [SF, {"latitude": 1}]}}, "malformatted $within arg"),
    ({"$within": {"$box": [SF, gp(100, 0)]}}, "GeoPoint latitude out of bounds: 100 > 90.0."),
    ({"$geoWithin": {"$polygon": []}}, "bad $geoWithin value; $polygon should contain at least 3 GeoPoints"),
    ({"$geoWithin": {"$polygon": [SF, SF]}}, "bad $geoWithin value; $polygon should contain at least 3 GeoPoints"),
    ({"$geoWithin": {"$polygon": {"__type": "Polygon", "coordinates": [[0, 0], [10, 0]]}}},
     "bad $geoWithin value; Polygon.coordinates should contain at least 3 lon/lat pairs"),
    ({"$geoWithin": {"$polygon": 1234}},
     "bad $geoWithin value; $polygon should be Polygon object or Array of Parse.GeoPoint's"),
    ({"$geoWithin": {"$polygon": [{}, {}, {}]}}, "bad $geoWithin value"),
    ({"$geoWithin": {"$polygon": [[0, 0], [181, 0], [0, 10]]}}, "GeoPoint longitude out of bounds: 181 > 180.0."),
    ({"$geoWithin": {"$polygon": [gp(0, 0), gp(181, 0), gp(0, 0)]}}, "GeoPoint latitude out of bounds: 181 > 90.0."),
    ({"$geoWithin": {"$centerSphere": [SF]}},
     "bad $geoWithin value; $centerSphere should be an array of Parse.GeoPoint and distance"),
    ({"$geoWithin": {"$centerSphere": "x"}},
     "bad $geoWithin value; $centerSphere should be an array of Parse.GeoPoint and distance"),
    ({"$geoWithin": {"$centerSphere": [{"x": 1}, 1]}}, "bad $geoWithin value; $centerSphere geo point invalid"),
    ({"$geoWithin": {"$centerSphere": [[0, 91], 1]}}, "GeoPoint latitude out of bounds: 91 > 90.0."),
    ({"$geoWithin": {"$centerSphere": [SF, -1]}}, "bad $geoWithin value; $centerSphere distance invalid"),
    ({"$geoWithin": {"$centerSphere": [SF, "far"]}}, "bad $geoWithin value; $centerSphere distance invalid"),
    ({"$geoWithin": {}}, "bad $geoWithin value; use $polygon or $centerSphere"),
    ({"$geoIntersects": {"$point": [1, 2]}}, "bad $geoIntersect value; $point should be GeoPoint"),
    ({"$geoIntersects": {}}, "bad $geoIntersect value; $point should be GeoPoint"),
    ({"$geoIntersects": {"$point": gp(0, 200)}}, "GeoPoint longitude out of bounds: 200 > 180.0."),
    ({"$text": {"$search": "coffee"}}, "bad $text: $search, should be object"),
    ({"$text": {}}, "bad $text: $search, should be object"),
    ({"$text": {"$search": {}}}, "bad $text: $term, should be string"),
    ({"$text": {"$search": {"$term": ""}}}, "bad $text: $term, should be string"),
    ({"$text": {"$search": {"$term": 5}}}, "bad $text: $term, should be string"),
    ({"$text": {"$search": {"$term": "x", "$language": 5}}}, "bad $text: $language, should be string"),
    ({"$text": {"$search": {"$term": "x", "$language": "klingon"}}},
     "bad $text: $language, unsupported language: klingon"),
    ({"$text": {"$search": {"$term": "x", "$caseSensitive": "yes"}}}, "bad $text: $caseSensitive, should be boolean"),
    ({"$text": {"$search": {"$term": "x", "$diacriticSensitive": 1}}},
     "bad $text: $diacriticSensitive, should be boolean"),
]


@pytest.mark.parametrize(("constraint", "message"), BAD)
def test_validation_errors(sqlite_client: Client, constraint: dict, message: str) -> None:
    r = sqlite_client.request("GET", "/classes/Place", params={"where": json.dumps({"location": constraint})})
    assert r.status_code == 400, r.text
    assert r.json() == {"code": 107, "error": message}


def test_valid_edge_values_are_accepted(sqlite_client: Client) -> None:
    for constraint in [
        {"$nearSphere": gp(90, 180)}, {"$nearSphere": gp(-90, -180)},
        {"$nearSphere": SF, "$maxDistance": math.pi * 2},
        {"$geoWithin": {"$centerSphere": [SF, "0.5"]}},  # parse-server's isNaN check lets numeric strings in
        {"$text": {"$search": {"$term": "x", "$caseSensitive": 0}}},  # falsy values are not type-checked
    ]:
        r = sqlite_client.request("GET", "/classes/Place", params={"where": json.dumps({"location": constraint})})
        assert r.status_code == 200, (constraint, r.text)


def test_text_refused_by_the_database_is_a_clean_error(places: Client, database_uri: str) -> None:
    if not on_secantus(database_uri):
        pytest.skip("only SecantusDB lacks $text")
    r = places.request("GET", "/classes/Place", params={"where": json.dumps({"text": {"$text": {"$search": {
        "$term": "coffee"}}}})})
    assert r.status_code == 400 and r.json()["code"] == 102, r.text
    assert r.json()["error"].startswith("The database refused this query: ")
