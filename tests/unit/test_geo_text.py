"""Geo/text query parsing, their MongoDB filters in parse-server's format, and the SQLite functions' math."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from parsectl.model.geo_text import NearSphere, TextSearch, split_search
from parsectl.model.query import SortKey, parse_where
from parsectl.model.schema import ClassSchema
from parsectl.storage import geo_math
from parsectl.storage.geo_sql import cap_bounds
from parsectl.storage.mongo_query import SCORE_FIELD, MongoCompiler

SCHEMA = ClassSchema.new("Place", {"loc": {"type": "GeoPoint"}, "area": {"type": "Polygon"},
                                   "text": {"type": "String"}, "n": {"type": "Number"}})


def gp(lat: float, lng: float) -> dict:
    return {"__type": "GeoPoint", "latitude": lat, "longitude": lng}


def mongo(where: Any, *, sorted_: bool = True) -> dict[str, Any]:
    compiler = MongoCompiler(SCHEMA)
    compiler.near_sorted = sorted_
    return asyncio.run(compiler.compile(parse_where(where)))


def test_max_distance_units_and_precedence() -> None:
    def radius(extra: dict) -> float | None:
        node = parse_where({"loc": {"$nearSphere": gp(1, 2), **extra}})
        assert isinstance(node, NearSphere)
        return node.max_distance

    assert radius({}) is None
    assert radius({"$maxDistanceInKilometers": 6371}) == pytest.approx(1)
    assert radius({"$maxDistanceInMiles": 3959}) == pytest.approx(1)
    assert radius({"$maxDistanceInRadians": 0.5}) == 0.5
    assert radius({"$maxDistance": 0.25, "$maxDistanceInKilometers": 6371}) == 0.25
    assert radius({"$maxDistanceInKilometers": 6371, "$maxDistanceInMiles": 1}) == pytest.approx(1)


@pytest.mark.parametrize(("where", "expected"), [
    ({"loc": {"$nearSphere": gp(10, 20), "$maxDistance": 0.1}}, {"loc": {"$nearSphere": [20.0, 10.0],
                                                                          "$maxDistance": 0.1}}),
    ({"loc": {"$nearSphere": gp(10, 20)}}, {"loc": {"$nearSphere": [20.0, 10.0]}}),
    ({"loc": {"$within": {"$box": [gp(5, 6), gp(1, 2)]}}}, {"loc": {"$geoWithin": {"$box": [[2.0, 1.0], [6.0, 5.0]]}}}),
    ({"loc": {"$geoWithin": {"$polygon": [gp(0, 0), [1, 2], gp(3, 3)]}}},
     {"loc": {"$geoWithin": {"$polygon": [[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]]}}}),
    ({"loc": {"$geoWithin": {"$centerSphere": [[1, 2], 0.5]}}},
     {"loc": {"$geoWithin": {"$centerSphere": [[1.0, 2.0], 0.5]}}}),
    ({"area": {"$geoIntersects": {"$point": gp(1, 2)}}},
     {"area": {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [2.0, 1.0]}}}}),
    ({"text": {"$text": {"$search": {"$term": "a b", "$language": "ES", "$caseSensitive": True}}}},
     {"$text": {"$search": "a b", "$language": "es", "$caseSensitive": True}}),
    ({"n": {"$nearSphere": gp(1, 2)}}, {"_id": {"$in": []}}),
])
def test_mongo_filters(where: dict, expected: dict) -> None:
    assert mongo(where) == expected


def test_mongo_near_without_sorting_is_center_sphere() -> None:
    near = {"loc": {"$nearSphere": gp(10, 20), "$maxDistance": 0.1}}
    assert mongo(near, sorted_=False) == {"loc": {"$geoWithin": {"$centerSphere": [[20.0, 10.0], 0.1]}}}
    assert mongo({"loc": {"$nearSphere": gp(10, 20)}}, sorted_=False) == {"loc": {"$ne": None}}
    # inside $or MongoDB refuses a sorting $nearSphere
    assert mongo({"$or": [near, {"n": 1}]}) == {"$or": [
        {"loc": {"$geoWithin": {"$centerSphere": [[20.0, 10.0], 0.1]}}}, {"n": {"$eq": 1}}]}


def test_mongo_score_sort() -> None:
    compiler = MongoCompiler(SCHEMA)
    assert compiler.sort([SortKey("$score"), SortKey("n", True), SortKey("$score", True)]) == [
        (SCORE_FIELD, -1), ("n", -1)]


def test_split_search() -> None:
    assert split_search('coffee "green tea" -milk -"ice cream" shop -') == (
        ["coffee", "shop"], ["green tea"], ["milk", "ice cream"])


def test_text_node() -> None:
    node = parse_where({"text": {"$text": {"$search": {"$term": "x", "$language": "EN"}}}})
    assert isinstance(node, TextSearch) and node.language == "en" and node.words == ["x"]


def test_haversine() -> None:
    assert geo_math.haversine(0, 0, 0, 180) == pytest.approx(math.pi)
    assert geo_math.haversine(0, 179.5, 0, -179.5) == pytest.approx(math.radians(1))
    # San Francisco to Los Angeles: about 559 km
    assert geo_math.haversine(37.7749, -122.4194, 34.0522, -118.2437) * 6371 == pytest.approx(559, abs=2)


def test_point_in_polygon_edges_and_concave() -> None:
    square = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    assert geo_math.point_in_polygon(5, 5, square)
    assert geo_math.point_in_polygon(10, 10, square) and geo_math.point_in_polygon(0, 5, square)
    assert not geo_math.point_in_polygon(10.001, 5, square)
    ell = [(0.0, 0.0), (2.0, 0.0), (2.0, 1.0), (1.0, 1.0), (1.0, 2.0), (0.0, 2.0)]
    assert geo_math.point_in_polygon(0.5, 1.5, ell) and not geo_math.point_in_polygon(1.5, 1.5, ell)
    stored = json.dumps({"__type": "Polygon", "coordinates": [[0, 0], [0, 10], [10, 10], [10, 0]]})
    assert geo_math.sql_polygon_contains(stored, 5, 5) == 1 and geo_math.sql_polygon_contains(stored, 11, 5) == 0
    assert geo_math.sql_polygon_contains(None, 5, 5) is None


def test_cap_bounds_contain_the_cap() -> None:
    assert cap_bounds(geo_math_point(89.5, 0), 0.05) is None  # reaches the pole
    assert cap_bounds(geo_math_point(0, 179.9), 0.01) is None  # crosses the antimeridian
    south, west, north, east = cap_bounds(geo_math_point(40, 10), 0.1)
    for bearing in range(0, 360, 5):  # points on the cap's rim fall inside the box
        lat, lng = destination(40, 10, 0.1, math.radians(bearing))
        assert south <= lat <= north and west <= lng <= east


def geo_math_point(lat: float, lng: float) -> Any:
    from parsectl.model.geo_text import Point
    return Point(lat, lng)


def destination(lat: float, lng: float, angle: float, bearing: float) -> tuple[float, float]:
    p1, l1 = math.radians(lat), math.radians(lng)
    p2 = math.asin(math.sin(p1) * math.cos(angle) + math.cos(p1) * math.sin(angle) * math.cos(bearing))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(angle) * math.cos(p1), math.cos(angle) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), math.degrees(l2)


def spec(**kw: Any) -> str:
    base = {"words": [], "phrases": [], "negated": [], "language": "english", "caseSensitive": False,
            "diacriticSensitive": False}
    return json.dumps({**base, **kw})


def test_text_score_function() -> None:
    assert geo_math.sql_text_score("Great coffee shops", spec(words=["shop"])) > 0
    assert geo_math.sql_text_score("Great coffee shops", spec(words=["tea"])) == 0
    assert geo_math.sql_text_score("Great coffee shops", spec(phrases=["coffee shops"])) > 0
    assert geo_math.sql_text_score("shops of coffee", spec(phrases=["coffee shops"])) == 0
    assert geo_math.sql_text_score("coffee by the lake", spec(words=["coffee"], negated=["lake"])) == 0
    assert geo_math.sql_text_score("un café", spec(words=["cafe"])) > 0
    assert geo_math.sql_text_score("un café", spec(words=["cafe"], diacriticSensitive=True)) == 0
    assert geo_math.sql_text_score("Coffee", spec(words=["coffee"], caseSensitive=True)) == 0
    assert geo_math.sql_text_score("coffee coffee coffee", spec(words=["coffee"])) > geo_math.sql_text_score(
        "coffee and tea", spec(words=["coffee"]))
    assert geo_math.sql_text_score(None, spec(words=["x"])) == 0
    assert [geo_math.stem_english(w) for w in ["shops", "cities", "running", "roasted", "glass", "bus"]] == [
        "shop", "city", "run", "roast", "glass", "bus"]


class FakeCollection:
    """Just enough of an async pymongo collection for ensure_query_indexes."""

    def __init__(self, name: str, indexes: dict[str, Any] | None = None) -> None:
        self.name = name
        self.indexes = dict(indexes or {})
        self.updates: list[tuple[dict, dict]] = []

    async def index_information(self) -> dict[str, Any]:
        return self.indexes

    async def create_index(self, keys: list[tuple[str, str]], name: str) -> str:
        self.indexes[name] = {"key": keys}
        return name

    async def update_one(self, flt: dict, update: dict) -> None:
        self.updates.append((flt, update))


def test_query_indexes_are_made_once_and_text_ones_recorded() -> None:
    from parsectl.storage.mongo_geo import ensure_query_indexes

    coll, schemas, made = FakeCollection("Place"), FakeCollection("_SCHEMA"), set()
    compiler = MongoCompiler(SCHEMA)
    asyncio.run(compiler.compile(parse_where({"loc": {"$nearSphere": gp(1, 2)},
                                              "text": {"$text": {"$search": {"$term": "x"}}}})))
    asyncio.run(ensure_query_indexes(coll, compiler, made, schemas))
    assert coll.indexes == {"loc_2d": {"key": [("loc", "2d")]}, "text_text": {"key": [("text", "text")]}}
    assert schemas.updates == [({"_id": "Place"}, {"$set": {"_metadata.indexes.text_text": {"text": "text"}}})]
    coll.indexes.clear()
    asyncio.run(ensure_query_indexes(coll, compiler, made, schemas))
    assert coll.indexes == {} and len(schemas.updates) == 1  # remembered: no second round trip
    # a collection that already has a text index (on any field) gets no second one
    other = FakeCollection("Other", {"body_text": {"key": [("_fts", "text"), ("_ftsx", 1)]}})
    asyncio.run(ensure_query_indexes(other, compiler, set(), schemas))
    assert set(other.indexes) == {"body_text", "loc_2d"}
