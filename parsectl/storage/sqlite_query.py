"""Compile a parsed query (:mod:`parsectl.model.query`) to an SQLite WHERE clause.

Column layout (see :mod:`parsectl.storage.sqlite`): scalar types in their own columns, Pointer as the
target objectId, Date as a canonical ISO string, File as its name, and Object/Array/GeoPoint/
Polygon/Bytes as canonical JSON text (sorted keys). Every value is bound as a parameter; every
identifier goes through :func:`quote`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from parsectl.model import codec, query
from parsectl.model.codec import FieldType
from parsectl.model.query import SortKey, compile_regex
from parsectl.model.schema import ClassSchema

JSON_TYPES = frozenset(("Object", "Array", "GeoPoint", "Polygon", "Bytes"))
_DATE_COLUMNS = {"createdAt", "updatedAt"}
_PATH = re.compile(r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def join_table(field: str, owner_class: str) -> str:
    return f"_Join:{field}:{owner_class}"


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# --- regular expressions -----------------------------------------------------------------------------


def regex_match(value: Any, pattern: str, options: str) -> int | None:
    if value is None or not isinstance(value, str):
        return 0
    compiled = compile_regex(pattern, options)
    if compiled is None:
        return 0
    return 1 if compiled.search(value) else 0


# --- compiling -----------------------------------------------------------------------------------------


class Column:
    """A field reference: the SQL expression and the schema type it holds (None if unknown)."""

    __slots__ = ("sql", "type")

    def __init__(self, sql: str, type_: FieldType | None) -> None:
        self.sql = sql
        self.type = type_


class Compiler:
    def __init__(self, schema: ClassSchema) -> None:
        self.schema = schema
        self.params: list[Any] = []

    # values -------------------------------------------------------------------------------------------
    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def column(self, field: str) -> Column:
        if field in ("objectId", "_rperm", "_wperm"):
            return Column(quote(field), {"type": "String"})
        if field in _DATE_COLUMNS:
            return Column(quote(field), {"type": "Date"})
        if "." in field:
            top, _, rest = field.partition(".")
            ftype = self.schema.fields.get(top)
            if ftype and ftype["type"] == "Object" and _PATH.match(rest):
                path = "$." + ".".join(f'"{part}"' for part in rest.split("."))
                return Column(f"json_extract({quote(top)}, '{path}')", None)
            return Column("NULL", None)
        ftype = self.schema.fields.get(field)
        if ftype is None or ftype["type"] in ("Relation", "ACL"):
            return Column("NULL", ftype)
        return Column(quote(field), ftype)

    def storage_value(self, col: Column, value: Any) -> Any:
        """A wire value as stored in (or extracted from) ``col``."""
        kind = col.type["type"] if col.type else None
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

    # nodes ---------------------------------------------------------------------------------------------
    def compile(self, node: query.Node) -> str:
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _MatchAll(self, node: query.MatchAll) -> str:
        return "1"

    def _MatchNone(self, node: query.MatchNone) -> str:
        return "0"

    def _And(self, node: query.And) -> str:
        if not node.children:
            return "1"
        return "(" + " AND ".join(self.compile(c) for c in node.children) + ")"

    def _Or(self, node: query.Or) -> str:
        if not node.children:
            return "0"
        return "(" + " OR ".join(self.compile(c) for c in node.children) + ")"

    def _Not(self, node: query.Not) -> str:
        return f"(NOT COALESCE({self.compile(node.child)}, 0))"

    def _relation_owners(self, field: str, related_ids: list[str]) -> str:
        table = quote(join_table(field, self.schema.class_name))
        marks = ", ".join(self.bind(i) for i in related_ids)
        return f'("objectId" IN (SELECT "owningId" FROM {table} WHERE "relatedId" IN ({marks})))'

    def _element_match(self, value: Any) -> str:
        """SQL testing one ``json_each`` element (``value``/``type`` columns) against a wire value."""
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

    def _array_has(self, col: Column, values: list[Any]) -> str:
        if not values:
            return "0"
        matches = " OR ".join(self._element_match(v) for v in values)
        return f"EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE {matches})"

    def _equals(self, col: Column, field: str, value: Any) -> str:
        kind = col.type["type"] if col.type else None
        if value is None:
            return f"({col.sql} IS NULL)"
        if kind == "Relation":
            if codec.is_pointer(value):
                return self._relation_owners(field, [value["objectId"]])
            return "0"
        if kind == "Array" and not isinstance(value, list):
            return self._array_has(col, [value])
        return f"({col.sql} = {self.bind(self.storage_value(col, value))})"

    def _Compare(self, node: query.Compare) -> str:
        col = self.column(node.field)
        if node.op == "eq":
            return self._equals(col, node.field, node.value)
        if node.op == "ne":
            if node.value is None:
                return f"({col.sql} IS NOT NULL)"
            return f"(NOT COALESCE({self._equals(col, node.field, node.value)}, 0))"
        sql_op = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[node.op]
        if node.value is None:
            return "0"
        value = self.storage_value(col, node.value)
        if col.type and col.type["type"] == "Array" and not isinstance(node.value, list):
            return (f"EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE type <> 'object' AND type <> 'array'"
                    f" AND value {sql_op} {self.bind(value)})")
        return f"({col.sql} {sql_op} {self.bind(value)})"

    def _In(self, node: query.In) -> str:
        col = self.column(node.field)
        kind = col.type["type"] if col.type else None
        values = [v for v in node.values if v is not None]
        parts: list[str] = []
        if kind == "Relation":
            ids = [v["objectId"] for v in values if codec.is_pointer(v)]
            parts.append(self._relation_owners(node.field, ids) if ids else "0")
        elif kind == "Array":
            parts.append(self._array_has(col, values))
        elif values:
            marks = ", ".join(self.bind(self.storage_value(col, v)) for v in values)
            parts.append(f"({col.sql} IN ({marks}))")
        if len(values) != len(node.values):
            parts.append(f"({col.sql} IS NULL)")
        sql = "(" + " OR ".join(parts) + ")" if parts else "0"
        if node.negate:
            return f"(NOT COALESCE({sql}, 0))"
        return sql

    def _All(self, node: query.All) -> str:
        col = self.column(node.field)
        if not node.values:
            return "0"
        if col.type is None or col.type["type"] != "Array":
            return self._And(query.And([query.Compare(node.field, "eq", v) for v in node.values]))
        return "(" + " AND ".join(self._array_has(col, [v]) for v in node.values) + ")"

    def _ContainedBy(self, node: query.ContainedBy) -> str:
        col = self.column(node.field)
        if col.type is None or col.type["type"] != "Array":
            return "0"
        if not node.values:
            return f"(json_array_length(COALESCE({col.sql}, '[]')) = 0)"
        allowed = " OR ".join(self._element_match(v) for v in node.values)
        return f"(NOT EXISTS (SELECT 1 FROM json_each({col.sql}) WHERE NOT ({allowed})))"

    def _Exists(self, node: query.Exists) -> str:
        col = self.column(node.field)
        if col.type and col.type["type"] == "Relation":
            return "1" if node.exists else "0"
        return f"({col.sql} IS {'NOT ' if node.exists else ''}NULL)"

    def _Regex(self, node: query.Regex) -> str:
        col = self.column(node.field)
        return f"(parse_regex({col.sql}, {self.bind(node.pattern)}, {self.bind(node.options)}) = 1)"

    def _RelatedTo(self, node: query.RelatedTo) -> str:
        table = quote(join_table(node.key, node.owner["className"]))
        return f'("objectId" IN (SELECT "relatedId" FROM {table} WHERE "owningId" = {self.bind(node.owner["objectId"])}))'

    def _PermIn(self, node: query.PermIn) -> str:
        col = quote(node.perm)
        marks = ", ".join(self.bind(g) for g in node.group)
        return f"({col} IS NULL OR EXISTS (SELECT 1 FROM json_each({col}) WHERE value IN ({marks})))"

    def _InQuery(self, node: query.InQuery) -> str:
        raise AssertionError("subqueries must be resolved before compiling")

    _Select = _InQuery

    # ordering ---------------------------------------------------------------------------------------
    def order_by(self, order: list[SortKey]) -> str:
        parts = []
        for key in order:
            top = key.field.split(".", 1)[0]
            if key.field not in ("objectId", "createdAt", "updatedAt") and top not in self.schema.fields:
                continue
            col = self.column(key.field)
            if col.sql == "NULL":
                continue
            parts.append(f"{col.sql} {'DESC NULLS FIRST' if key.descending else 'ASC NULLS LAST'}")
        return (" ORDER BY " + ", ".join(parts)) if parts else ""
