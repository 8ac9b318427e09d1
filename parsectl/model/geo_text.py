"""Geo and full-text constraints of a ``where`` object, validated as parse-server 9.10 validates them.

:func:`parse_geo_text` turns the ``$nearSphere`` (+ ``$maxDistance*``), ``$within``, ``$geoWithin``,
``$geoIntersects`` and ``$text`` operators of one field into query nodes; the storage dialects compile
them (MongoDB natively, SQL with plain math, see :mod:`parsectl.storage.geo_sql`). Error codes and
messages are parse-server's (``MongoTransform.transformConstraint`` / ``PostgresStorageAdapter``);
where parse-server lets a bad value through to a 500 (a point out of range, a bad ``$maxDistance``),
the answer is 107 with the message the Parse SDK's ``GeoPoint._validate`` uses.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from parsectl.model import errors
from parsectl.model.errors import ParseError

EARTH_RADIUS_KM = 6371.0
EARTH_RADIUS_MILES = 3959.0

GEO_OPERATORS = frozenset((
    "$nearSphere", "$maxDistance", "$maxDistanceInRadians", "$maxDistanceInMiles", "$maxDistanceInKilometers",
    "$within", "$geoWithin", "$geoIntersects", "$text",
))

# The $maxDistance spellings, weakest first: parse-server applies them in reverse alphabetical order
# and the last one applied wins, so $maxDistance beats Kilometers beats Miles beats Radians.
_DISTANCES = (("$maxDistanceInRadians", 1.0), ("$maxDistanceInMiles", EARTH_RADIUS_MILES),
              ("$maxDistanceInKilometers", EARTH_RADIUS_KM), ("$maxDistance", 1.0))

# $language values MongoDB's text indexes accept (names and ISO codes), with the PostgreSQL text search
# configuration of the same language ("simple": no stemming, no stop words).
LANGUAGES = {
    "none": "simple", "danish": "danish", "da": "danish", "dutch": "dutch", "nl": "dutch",
    "english": "english", "en": "english", "finnish": "finnish", "fi": "finnish", "french": "french",
    "fr": "french", "german": "german", "de": "german", "hungarian": "hungarian", "hu": "hungarian",
    "italian": "italian", "it": "italian", "norwegian": "norwegian", "nb": "norwegian",
    "portuguese": "portuguese", "pt": "portuguese", "romanian": "romanian", "ro": "romanian",
    "russian": "russian", "ru": "russian", "spanish": "spanish", "es": "spanish", "swedish": "swedish",
    "sv": "swedish", "turkish": "turkish", "tr": "turkish",
}


@dataclass(frozen=True)
class Point:
    latitude: float
    longitude: float


@dataclass
class NearSphere:
    """GeoPoints within ``max_distance`` radians of ``point`` (any distance if None), nearest first."""

    field: str
    point: Point
    max_distance: float | None = None


@dataclass
class WithinBox:
    """GeoPoints inside the rectangle spanned by two corners (inclusive, not wrapping the antimeridian)."""

    field: str
    south: float
    west: float
    north: float
    east: float


@dataclass
class WithinPolygon:
    """GeoPoints inside (or on the edge of) a polygon given as (longitude, latitude) vertices."""

    field: str
    vertices: list[tuple[float, float]]


@dataclass
class WithinSphere:
    """GeoPoints within ``radius`` radians of ``center`` (``$geoWithin.$centerSphere``)."""

    field: str
    center: Point
    radius: float


@dataclass
class GeoIntersects:
    """Polygons that contain ``point`` (on an edge counts)."""

    field: str
    point: Point


@dataclass
class TextSearch:
    """``$text``: MongoDB's ``$search`` syntax (words, "phrases", -negations) on one String field."""

    field: str
    term: str
    language: str = "english"
    case_sensitive: bool = False
    diacritic_sensitive: bool = False
    words: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)


def _bad(message: str) -> ParseError:
    return ParseError(errors.INVALID_JSON, message)


def _js_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e21 else repr(float(value))


def validate_point(latitude: Any, longitude: Any) -> Point:
    """The Parse SDK's ``GeoPoint._validate`` (a TypeError, so a 500, in parse-server; 107 here)."""
    if (isinstance(latitude, bool) or isinstance(longitude, bool) or not isinstance(latitude, int | float)
            or not isinstance(longitude, int | float) or math.isnan(latitude) or math.isnan(longitude)):
        raise _bad("GeoPoint latitude and longitude must be valid numbers")
    if latitude < -90.0:
        raise _bad(f"GeoPoint latitude out of bounds: {_js_number(latitude)} < -90.0.")
    if latitude > 90.0:
        raise _bad(f"GeoPoint latitude out of bounds: {_js_number(latitude)} > 90.0.")
    if longitude < -180.0:
        raise _bad(f"GeoPoint longitude out of bounds: {_js_number(longitude)} < -180.0.")
    if longitude > 180.0:
        raise _bad(f"GeoPoint longitude out of bounds: {_js_number(longitude)} > 180.0.")
    return Point(float(latitude), float(longitude))


def _is_geo_point(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__type") == "GeoPoint"


def _geo_point(value: Any, message: str) -> Point:
    if not _is_geo_point(value):
        raise _bad(message)
    return validate_point(value.get("latitude"), value.get("longitude"))


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


def _number(value: Any) -> float | None:
    """A JavaScript ``isNaN``-style number: numbers and numeric strings; None otherwise."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip() or "0")
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def parse_geo_text(key: str, cond: dict[str, Any]) -> list[Any]:
    """The geo/text nodes of one field's constraint object (only the operators in GEO_OPERATORS)."""
    nodes: list[Any] = []
    if "$text" in cond:
        nodes.append(_text(key, cond["$text"]))
    if "$nearSphere" in cond:
        nodes.append(_near_sphere(key, cond))
    elif any(op in cond for op, _ in _DISTANCES):
        op = next(op for op, _ in _DISTANCES if op in cond)
        raise _bad(f"bad {op}: it needs $nearSphere")
    if "$within" in cond:
        nodes.append(_within(key, cond["$within"]))
    if "$geoWithin" in cond:
        nodes.append(_geo_within(key, cond["$geoWithin"]))
    if "$geoIntersects" in cond:
        arg = cond["$geoIntersects"]
        point = arg.get("$point") if isinstance(arg, dict) else None
        nodes.append(GeoIntersects(key, _geo_point(point, "bad $geoIntersect value; $point should be GeoPoint")))
    return nodes


def _near_sphere(key: str, cond: dict[str, Any]) -> NearSphere:
    point = _geo_point(cond["$nearSphere"], "bad $nearSphere value; it should be a GeoPoint")
    max_distance: float | None = None
    for op, radius in _DISTANCES:
        if op not in cond:
            continue
        value = cond[op]
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
            raise _bad(f"bad {op} value; it should be a number of at least 0")
        max_distance = float(value) / radius
    return NearSphere(key, point, max_distance)


def _within(key: str, arg: Any) -> WithinBox:
    box = arg.get("$box") if isinstance(arg, dict) else None
    if not isinstance(box, list) or len(box) != 2:
        raise _bad("malformatted $within arg")
    a = _geo_point(box[0], "malformatted $within arg")
    b = _geo_point(box[1], "malformatted $within arg")
    return WithinBox(key, min(a.latitude, b.latitude), min(a.longitude, b.longitude),
                     max(a.latitude, b.latitude), max(a.longitude, b.longitude))


def _geo_within(key: str, arg: Any) -> Any:
    if not isinstance(arg, dict):
        raise _bad("bad $geoWithin value; use $polygon or $centerSphere")
    if "$polygon" in arg:
        return WithinPolygon(key, _polygon(arg["$polygon"]))
    if "$centerSphere" in arg:
        sphere = arg["$centerSphere"]
        if not isinstance(sphere, list) or len(sphere) < 2:
            raise _bad("bad $geoWithin value; $centerSphere should be an array of Parse.GeoPoint and distance")
        center = sphere[0]
        if _pair(center):
            point = validate_point(center[1], center[0])
        elif _is_geo_point(center):
            point = validate_point(center.get("latitude"), center.get("longitude"))
        else:
            raise _bad("bad $geoWithin value; $centerSphere geo point invalid")
        radius = _number(sphere[1])
        if radius is None or radius < 0:
            raise _bad("bad $geoWithin value; $centerSphere distance invalid")
        return WithinSphere(key, point, radius)
    raise _bad("bad $geoWithin value; use $polygon or $centerSphere")


def _polygon(polygon: Any) -> list[tuple[float, float]]:
    """Vertices as (longitude, latitude): GeoPoints, or ``[longitude, latitude]`` pairs as parse-server
    reads them (also the coordinates of a Polygon object, which parse-server takes in that order)."""
    if isinstance(polygon, dict) and polygon.get("__type") == "Polygon":
        points = polygon.get("coordinates")
        if not isinstance(points, list) or len(points) < 3:
            raise _bad("bad $geoWithin value; Polygon.coordinates should contain at least 3 lon/lat pairs")
    elif isinstance(polygon, list):
        if len(polygon) < 3:
            raise _bad("bad $geoWithin value; $polygon should contain at least 3 GeoPoints")
        points = polygon
    else:
        raise _bad("bad $geoWithin value; $polygon should be Polygon object or Array of Parse.GeoPoint's")
    vertices: list[tuple[float, float]] = []
    for point in points:
        if _pair(point):
            p = validate_point(point[1], point[0])
        elif _is_geo_point(point):
            p = validate_point(point.get("latitude"), point.get("longitude"))
        else:
            raise _bad("bad $geoWithin value")
        vertices.append((p.longitude, p.latitude))
    return vertices


_TOKEN = re.compile(r'(-?)"([^"]*)"|(\S+)')


def split_search(term: str) -> tuple[list[str], list[str], list[str]]:
    """MongoDB's ``$search`` string as (words, phrases, negated words and phrases)."""
    words: list[str] = []
    phrases: list[str] = []
    negated: list[str] = []
    for match in _TOKEN.finditer(term):
        if match.group(2) is not None:
            phrase = match.group(2).strip()
            if phrase:
                (negated if match.group(1) else phrases).append(phrase)
            continue
        token = match.group(3)
        if token.startswith("-") and len(token) > 1:
            negated.append(token[1:])
        elif token != "-":
            words.append(token)
    return words, phrases, negated


def _text(key: str, arg: Any) -> TextSearch:
    search = arg.get("$search") if isinstance(arg, dict) else None
    if not isinstance(search, dict):
        raise _bad("bad $text: $search, should be object")
    term = search.get("$term")
    if not term or not isinstance(term, str):
        raise _bad("bad $text: $term, should be string")
    language = search.get("$language")
    if language and not isinstance(language, str):
        raise _bad("bad $text: $language, should be string")
    if language and language.lower() not in LANGUAGES:
        raise _bad(f"bad $text: $language, unsupported language: {language}")
    flags: dict[str, bool] = {}
    for name in ("$caseSensitive", "$diacriticSensitive"):
        value = search.get(name)
        if value and not isinstance(value, bool):
            raise _bad(f"bad $text: {name}, should be boolean")
        flags[name] = bool(value)
    words, phrases, negated = split_search(term)
    return TextSearch(key, term, (language or "english").lower(), flags["$caseSensitive"],
                      flags["$diacriticSensitive"], words, phrases, negated)
