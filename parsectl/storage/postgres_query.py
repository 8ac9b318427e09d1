"""The PostgreSQL dialect of the query compiler, on parse-server's column types.

Column types as parse-server creates them: text, double precision, boolean, timestamptz, jsonb
(Object, Array, Bytes), text (Pointer objectId, File name), point (GeoPoint, x = longitude),
polygon, and ``text[]`` for ``_rperm``/``_wperm``.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.types.json import Jsonb

from parsectl.model import codec
from parsectl.model.geo_text import LANGUAGES, Point, TextSearch
from parsectl.model.query import QUOTED_PATTERN
from parsectl.storage.geo_math import fold
from parsectl.storage.geo_sql import lit
from parsectl.storage.sql import Column, SQLCompiler

_JSONB_TYPE = {bool: "boolean", str: "string", int: "number", float: "number"}


def to_datetime(value: Any) -> Any:
    iso = codec.date_iso(value)
    return codec.parse_iso(iso) if iso else value


def text_array(values: Any) -> str:
    """A ``text[]`` literal (``{"*","role:Admin"}``): psycopg sends it as plain text, which costs less
    than adapting a list of strings on every query."""
    items = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in items) + "}"


def point_sql(value: dict[str, Any]) -> str:
    return f"({value['longitude']},{value['latitude']})"


def polygon_sql(value: dict[str, Any]) -> str:
    return "(" + ",".join(f"({lng},{lat})" for lat, lng in value["coordinates"]) + ")"


def postgres_regex(pattern: str, options: str) -> str:
    """A PostgreSQL ARE for a Parse ``$regex``: ``\\Q...\\E`` quoting and the x/m options as embedded flags."""
    translated = QUOTED_PATTERN.sub(lambda m: re.escape(m.group(1)), pattern)
    flags = ("x" if "x" in options else "") + ("w" if "m" in options else "")
    return f"(?{flags}){translated}" if flags else translated


class PostgresCompiler(SQLCompiler):
    PLACEHOLDER = "%s"
    TRUE = "TRUE"
    FALSE = "FALSE"

    def json_path(self, column: str, parts: list[str]) -> str:
        return f"({column} #> '{{{','.join(parts)}}}')"

    def storage_value(self, col: Column, value: Any) -> Any:
        kind = col.kind
        if kind == "Date":
            return to_datetime(value)
        if isinstance(value, dict):
            t = value.get("__type")
            if t == "Pointer" and kind in ("Pointer", "String", None):
                return value["objectId"]
            if t == "File" and kind in ("File", "String"):
                return value["name"]
            if t == "Date":
                return to_datetime(value)
            return Jsonb(value)
        if isinstance(value, list):
            return Jsonb(value)
        return value

    def equals(self, col: Column, field: str, value: Any) -> str:
        if col.kind == "GeoPoint" and isinstance(value, dict) and value.get("__type") == "GeoPoint":
            return f"({col.sql} ~= {self.bind(point_sql(value))}::point)"
        if col.kind == "Polygon" and isinstance(value, dict) and value.get("__type") == "Polygon":
            return f"({col.sql} ~= {self.bind(polygon_sql(value))}::polygon)"
        if col.kind in ("GeoPoint", "Polygon") and value is not None:
            return self.FALSE
        return super().equals(col, field, value)

    def path_equals(self, col: Column, value: Any) -> str:
        return f"({col.sql} = {self.bind(Jsonb(value))})"

    def path_compare(self, col: Column, op: str, value: Any) -> str:
        if isinstance(value, dict) and value.get("__type") == "Date":
            return f"(({col.sql} ->> 'iso') {op} {self.bind(value['iso'])})"
        kind = _JSONB_TYPE.get(type(value))
        if kind is None:
            return self.FALSE
        return f"(jsonb_typeof({col.sql}) = '{kind}' AND {col.sql} {op} {self.bind(Jsonb(value))})"

    def array_has(self, col: Column, values: list[Any]) -> str:
        if not values:
            return self.FALSE
        parts = [f"({col.sql} @> {self.bind(Jsonb([v]))})" for v in values]
        return "(" + " OR ".join(parts) + ")"

    def array_has_all(self, col: Column, values: list[Any]) -> str:
        return f"({col.sql} @> {self.bind(Jsonb(values))})"

    def array_compare(self, col: Column, op: str, value: Any) -> str:
        kind = _JSONB_TYPE.get(type(value))
        if kind is None:
            return self.FALSE
        return (f"EXISTS (SELECT 1 FROM jsonb_array_elements({col.sql}) AS _e(_v) WHERE jsonb_typeof(_e._v) = "
                f"'{kind}' AND _e._v {op} {self.bind(Jsonb(value))})")

    def array_contained_by(self, col: Column, values: list[Any]) -> str:
        return f"(COALESCE({col.sql}, '[]'::jsonb) <@ {self.bind(Jsonb(values))})"

    def regex(self, col: Column, pattern: str, options: str) -> str:
        text = f"({col.sql} #>> '{{}}')" if col.path else (col.sql if col.kind == "String" else f"{col.sql}::text")
        operator = "~*" if "i" in options else "~"
        return f"({text} {operator} {self.bind(postgres_regex(pattern, options))})"

    def array_regex(self, col: Column, pattern: str, options: str) -> str:
        operator = "~*" if "i" in options else "~"
        return (f"EXISTS (SELECT 1 FROM jsonb_array_elements({col.sql}) AS _e(_v) WHERE jsonb_typeof(_e._v) ="
                f" 'string' AND (_e._v #>> '{{}}') {operator} {self.bind(postgres_regex(pattern, options))})")

    def perm_in(self, column: str, group: list[str]) -> str:
        return f"({column} IS NULL OR {column} && {self.bind(text_array(group))}::text[])"

    # --- geo and text (parsectl.storage.geo_sql), with plain math: no PostGIS ------------------------------
    def geo_lat_lng(self, sql: str) -> tuple[str, str]:
        return f"{sql}[1]", f"{sql}[0]"  # point x = longitude, y = latitude

    def geo_distance(self, sql: str, point: Point) -> str:
        lat, lng = self.geo_lat_lng(sql)
        lat0, lng0 = lit(point.latitude), lit(point.longitude)
        return (f"(2 * asin(LEAST(1.0, sqrt(power(sin(radians({lat} - {lat0}) / 2), 2) + cos(radians({lat0}))"
                f" * cos(radians({lat})) * power(sin(radians({lng} - {lng0}) / 2), 2)))))")

    def geo_box(self, sql: str, south: float, west: float, north: float, east: float) -> str:
        return f"({sql} <@ box(point({lit(west)}, {lit(south)}), point({lit(east)}, {lit(north)})))"

    def geo_in_polygon(self, sql: str, vertices: list[tuple[float, float]]) -> str:
        text = "(" + ",".join(f"({lit(x)},{lit(y)})" for x, y in vertices) + ")"
        return f"({sql} <@ {self.bind(text)}::polygon)"

    def polygon_contains(self, sql: str, point: Point) -> str:
        return f"({sql} @> point({lit(point.longitude)}, {lit(point.latitude)}))"

    def _text_parts(self, sql: str, node: TextSearch) -> tuple[str, str, str]:
        """(document text, tsvector, tsquery) SQL for a $text node."""
        config = f"'{LANGUAGES[node.language]}'::regconfig"  # a name from a fixed list
        text = sql if node.diacritic_sensitive else f"translate({sql}, '{ACCENTED}', '{UNACCENTED}')"

        def term(value: str) -> str:
            return self.bind(value if node.diacritic_sensitive else fold(value))

        query = ""
        if node.words:
            query = "(" + " || ".join(f"plainto_tsquery({config}, {term(w)})" for w in node.words) + ")"
        for phrase in node.phrases:
            query += (" && " if query else "") + f"phraseto_tsquery({config}, {term(phrase)})"
        for negated in node.negated:
            query += f" && !!phraseto_tsquery({config}, {term(negated)})"
        return text, f"to_tsvector({config}, {text})", f"({query})"

    def text_match(self, sql: str, node: TextSearch) -> str:
        text, vector, tsquery = self._text_parts(sql, node)
        match = f"({vector} @@ {tsquery}"
        if node.case_sensitive:  # to_tsvector folds case: the exact spelling must also appear
            fold_term = (lambda v: v) if node.diacritic_sensitive else fold
            if node.words:
                match += " AND (" + " OR ".join(f"strpos({text}, {self.bind(fold_term(w))}) > 0"
                                                for w in node.words) + ")"
            for phrase in node.phrases:
                match += f" AND strpos({text}, {self.bind(fold_term(phrase))}) > 0"
        return match + ")"

    def text_score(self, sql: str, node: TextSearch) -> str:
        _, vector, tsquery = self._text_parts(sql, node)
        return f"ts_rank_cd({vector}, {tsquery}, 32)"


def _accent_table() -> tuple[str, str]:
    """Latin letters with diacritics and their plain letters, for translate() (no unaccent extension)."""
    accented, plain = [], []
    for code in range(0xC0, 0x250):
        char = chr(code)
        base = fold(char)
        if base != char and len(base) == 1 and base.isascii() and base.isalpha():
            accented.append(char)
            plain.append(base)
    return "".join(accented), "".join(plain)


ACCENTED, UNACCENTED = _accent_table()
