"""The SQLite dialect of the query compiler (:mod:`parsectl.storage.sql`).

Column layout (see :mod:`parsectl.storage.sqlite`): scalar types in their own columns, Pointer as the
target objectId, Date as a canonical ISO string, File as its name, and Object/Array/GeoPoint/
Polygon/Bytes as canonical JSON text (sorted keys), searched with ``json_each``/``json_extract``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from parsectl.model import codec
from parsectl.model.geo_text import Point, TextSearch
from parsectl.model.query import compile_regex
from parsectl.storage.geo_sql import lit
from parsectl.storage.sql import (
    JSON_TYPES,
    Column,
    SQLCompiler,
    canonical_json,
    join_table,
    quote,
)

__all__ = ["JSON_TYPES", "Compiler", "canonical_json", "join_table", "quote", "regex_match"]


# The time one query may spend in regular expressions (set by the adapter before each statement).
REGEX_BUDGET_SECONDS = 1.0
_deadline = [0.0]


class RegexTooSlow(Exception):
    """A ``$regex`` used up the query's time budget."""


def start_regex_budget() -> None:
    _deadline[0] = time.monotonic() + REGEX_BUDGET_SECONDS


def regex_match(value: Any, pattern: str, options: str) -> int:
    """The ``parse_regex(value, pattern, options)`` SQL function."""
    if value is None or not isinstance(value, str):
        return 0
    compiled = compile_regex(pattern, options)
    if compiled is None:
        return 0
    remaining = _deadline[0] - time.monotonic()
    if remaining <= 0:
        raise RegexTooSlow()
    try:
        return 1 if compiled.search(value, timeout=remaining) else 0
    except TimeoutError:
        raise RegexTooSlow() from None


class Compiler(SQLCompiler):
    PLACEHOLDER = "?"

    def json_path(self, column: str, parts: list[str]) -> str:
        path = "$." + ".".join(f'"{part}"' for part in parts)
        return f"json_extract({column}, '{path}')"

    def storage_value(self, col: Column, value: Any) -> Any:
        kind = col.kind
        if isinstance(value, dict):
            t = value.get("__type")
            if t == "Date":
                return value["iso"]
            if t == "Pointer":
                return value["objectId"] if kind in ("Pointer", None, "String") else canonical_json(value)
            if t == "File" and kind == "File":
                return value["name"]
            return canonical_json(value)
        if isinstance(value, list):
            return canonical_json(value)
        if isinstance(value, str) and kind == "Date":
            return codec.date_iso(value) or value
        if isinstance(value, bool):
            return int(value)
        return value

    # json_extract gives SQL scalars for JSON scalars and minified JSON text for objects/arrays
    def path_equals(self, col: Column, value: Any) -> str:
        return f"({col.sql} = {self.bind(self.storage_value(col, value))})"

    def path_compare(self, col: Column, op: str, value: Any) -> str:
        return f"({col.sql} {op} {self.bind(self.storage_value(col, value))})"

    def _element_match(self, value: Any) -> str:
        """SQL testing one ``json_each`` element (its ``value``/``type`` columns) against a wire value."""
        if codec.is_pointer(value):
            return (f"(type = 'object' AND json_extract(value, '$.objectId') = {self.bind(value['objectId'])}"
                    f" AND json_extract(value, '$.className') = {self.bind(value['className'])})")
        if isinstance(value, dict) and value.get("__type") == "Date":
            return f"(type = 'object' AND json_extract(value, '$.iso') = {self.bind(value['iso'])})"
        if isinstance(value, dict | list):
            return f"(type IN ('object', 'array') AND value = {self.bind(canonical_json(value))})"
        if isinstance(value, bool):
            return f"(type = {self.bind('true' if value else 'false')})"
        if isinstance(value, int | float):
            return f"(type IN ('integer', 'real') AND value = {self.bind(value)})"
        if value is None:
            return "(type = 'null')"
        return f"(type = 'text' AND value = {self.bind(value)})"

    def array_has(self, col: Column, values: list[Any]) -> str:
        if not values:
            return self.FALSE
        matches = " OR ".join(self._element_match(v) for v in values)
        return f"EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE {matches})"

    def array_compare(self, col: Column, op: str, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return self.FALSE
        types = "'text'" if isinstance(value, str) else "'integer', 'real'"
        return (f"EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE type IN ({types})"
                f" AND value {op} {self.bind(value)})")

    def array_regex(self, col: Column, pattern: str, options: str) -> str:
        return (f"EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE type = 'text'"
                f" AND parse_regex(value, {self.bind(pattern)}, {self.bind(options)}) = 1)")

    def array_contained_by(self, col: Column, values: list[Any]) -> str:
        if not values:
            return f"(json_array_length(COALESCE({col.sql}, '[]')) = 0)"
        allowed = " OR ".join(self._element_match(v) for v in values)
        return f"(NOT EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE NOT ({allowed})))"

    def regex(self, col: Column, pattern: str, options: str) -> str:
        return f"(parse_regex({col.sql}, {self.bind(pattern)}, {self.bind(options)}) = 1)"

    def perm_in(self, column: str, group: list[str]) -> str:
        marks = ", ".join(self.bind(g) for g in group)
        return f"({column} IS NULL OR EXISTS (SELECT 1 FROM json_each({column}) WHERE value IN ({marks})))"

    # --- geo and text (parsectl.storage.geo_sql; functions from parsectl.storage.geo_math) ---------------
    def geo_lat_lng(self, sql: str) -> tuple[str, str]:
        return f"json_extract({sql}, '$.latitude')", f"json_extract({sql}, '$.longitude')"

    def geo_distance(self, sql: str, point: Point) -> str:
        lat, lng = self.geo_lat_lng(sql)
        return f"parse_distance({lat}, {lng}, {lit(point.latitude)}, {lit(point.longitude)})"

    def geo_in_polygon(self, sql: str, vertices: list[tuple[float, float]]) -> str:
        lat, lng = self.geo_lat_lng(sql)
        return f"(parse_in_polygon({lat}, {lng}, {self.bind(orjson.dumps(vertices).decode())}) = 1)"

    def polygon_contains(self, sql: str, point: Point) -> str:
        return f"(parse_polygon_contains({sql}, {lit(point.latitude)}, {lit(point.longitude)}) = 1)"

    def _text_spec(self, node: TextSearch) -> str:
        return self.bind(orjson.dumps({
            "words": node.words, "phrases": node.phrases, "negated": node.negated, "language": node.language,
            "caseSensitive": node.case_sensitive, "diacriticSensitive": node.diacritic_sensitive,
        }).decode())

    def text_match(self, sql: str, node: TextSearch) -> str:
        return f"(parse_text_score({sql}, {self._text_spec(node)}) > 0)"

    def text_score(self, sql: str, node: TextSearch) -> str:
        return f"parse_text_score({sql}, {self._text_spec(node)})"
