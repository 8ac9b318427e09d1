"""Plain-Python geometry and word matching, registered as SQLite functions by :mod:`parsectl.storage.sqlite`.

They run inside SQLite's query (``WHERE``/``ORDER BY``), row by row, so no query fetches rows to filter
them in Python. Distances are great-circle angles in radians (MongoDB's ``$nearSphere`` unit); polygons
are flat (MongoDB's legacy ``$polygon`` and PostgreSQL's ``polygon`` type); a point on an edge is inside.

Full text follows MongoDB's ``$text``: any of the words, all the "phrases", none of the -negations;
case- and diacritic-insensitive unless asked; in English, stop words are dropped and words are reduced by a
light suffix stemmer.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
import unicodedata
from typing import Any

import orjson

_EPSILON = 1e-9


def haversine(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The angle (radians) between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dlat = p2 - p1
    dlng = math.radians(lng2 - lng1)
    h = math.sin(dlat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dlng / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


def _on_segment(x: float, y: float, x1: float, y1: float, x2: float, y2: float) -> bool:
    cross = (x - x1) * (y2 - y1) - (y - y1) * (x2 - x1)
    if abs(cross) > _EPSILON * max(1.0, abs(x2 - x1) + abs(y2 - y1)):
        return False
    return min(x1, x2) - _EPSILON <= x <= max(x1, x2) + _EPSILON and min(y1, y2) - _EPSILON <= y <= max(y1, y2) + _EPSILON


def point_in_polygon(x: float, y: float, ring: list[tuple[float, float]]) -> bool:
    """Whether (x, y) is inside the polygon or on its boundary (ray casting)."""
    inside = False
    n = len(ring)
    for i in range(n):
        x1, y1 = ring[i]
        x2, y2 = ring[(i + 1) % n]
        if _on_segment(x, y, x1, y1, x2, y2):
            return True
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


# --- SQLite functions (NULL in, NULL out) ----------------------------------------------------------------

def sql_distance(lat: Any, lng: Any, lat0: float, lng0: float) -> float | None:
    """``parse_distance(lat, lng, lat0, lng0)``: the angle in radians."""
    if not isinstance(lat, int | float) or not isinstance(lng, int | float):
        return None
    return haversine(lat, lng, lat0, lng0)


@functools.lru_cache(maxsize=256)
def _ring(vertices_json: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in orjson.loads(vertices_json)]


def sql_in_polygon(lat: Any, lng: Any, vertices_json: str) -> int | None:
    """``parse_in_polygon(lat, lng, '[[lng, lat], ...]')``."""
    if not isinstance(lat, int | float) or not isinstance(lng, int | float):
        return None
    return int(point_in_polygon(lng, lat, _ring(vertices_json)))


def sql_polygon_contains(polygon_json: Any, lat: float, lng: float) -> int | None:
    """``parse_polygon_contains(stored Polygon JSON, lat, lng)`` (stored coordinates are [lat, lng])."""
    if not isinstance(polygon_json, str):
        return None
    try:
        coordinates = orjson.loads(polygon_json).get("coordinates") or []
        ring = [(float(p[1]), float(p[0])) for p in coordinates]
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, IndexError):
        return 0
    return int(len(ring) >= 3 and point_in_polygon(lng, lat, ring))


# --- words ----------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def fold(text: str) -> str:
    """Text without diacritics (é -> e)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stem_english(word: str) -> str:
    """A light English suffix stemmer (plural and -ing/-ed forms), applied to both sides of a match."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if len(word) > 4 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 5 and word.endswith(("ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            base = word[: -len(suffix)]
            if len(base) > 2 and base[-1] == base[-2] and base[-1] not in "lsz":
                base = base[:-1]
            return base
    return word


# English stop words (as MongoDB's and PostgreSQL's English configurations drop them: they never match).
_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before being below between
both but by can did do does doing don down during each few for from further had has have having he her here
hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
off on once only or other our ours ourselves out over own same she should so some such than that the their
theirs them themselves then there these they this those through to too under until up very was we were what
when where which while who whom why will with you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def _tokens(text: str, case_sensitive: bool, diacritic_sensitive: bool, stem: bool) -> list[str]:
    if not diacritic_sensitive:
        text = fold(text)
    words = _WORD.findall(text)
    if stem:  # English
        words = [w for w in words if w.lower() not in STOP_WORDS]
    if not case_sensitive:
        words = [w.lower() for w in words]
    if stem:
        words = [_stem_keep_case(w) if case_sensitive else stem_english(w) for w in words]
    return words


def _stem_keep_case(word: str) -> str:
    stemmed = stem_english(word.lower())
    return word[: len(stemmed)] if word.lower().startswith(stemmed) else stemmed


@functools.lru_cache(maxsize=256)
def _search(spec_json: str) -> tuple[list[list[str]], list[list[str]], list[list[str]], bool, bool, bool]:
    spec = orjson.loads(spec_json)
    case, diacritic = bool(spec["caseSensitive"]), bool(spec["diacriticSensitive"])
    stem = spec["language"] in ("english", "en")

    def tok(text: str) -> list[str]:
        return _tokens(text, case, diacritic, stem)

    words = [t for w in spec["words"] for t in ([tok(w)] if tok(w) else [])]
    phrases = [tok(p) for p in spec["phrases"] if tok(p)]
    negated = [tok(n) for n in spec["negated"] if tok(n)]
    return words, phrases, negated, case, diacritic, stem


def _occurrences(doc: list[str], seq: list[str]) -> int:
    n = len(seq)
    return sum(1 for i in range(len(doc) - n + 1) if doc[i:i + n] == seq)


def sql_text_score(value: Any, spec_json: str) -> float:
    """``parse_text_score(text, spec)``: 0 when the text does not match, else a relevance score."""
    if not isinstance(value, str):
        return 0.0
    words, phrases, negated, case, diacritic, stem = _search(spec_json)
    doc = _tokens(value, case, diacritic, stem)
    if not doc or (not words and not phrases):
        return 0.0
    if any(_occurrences(doc, n) for n in negated):
        return 0.0
    phrase_hits = [_occurrences(doc, p) for p in phrases]
    if not all(phrase_hits):
        return 0.0
    word_hits = [_occurrences(doc, w) for w in words]
    if words and not any(word_hits):
        return 0.0
    hits = [h for h in word_hits + phrase_hits if h]
    return round(sum(0.5 + 0.5 * h / len(doc) for h in hits), 6)


def register(db: sqlite3.Connection) -> None:
    """Define the functions on a SQLite connection."""
    db.create_function("parse_distance", 4, sql_distance, deterministic=True)
    db.create_function("parse_in_polygon", 3, sql_in_polygon, deterministic=True)
    db.create_function("parse_polygon_contains", 3, sql_polygon_contains, deterministic=True)
    db.create_function("parse_text_score", 2, sql_text_score, deterministic=True)
