"""One compiler from parsed queries (:mod:`parsectl.model.query`) to SQL, with a dialect per database.

The tree walk, the relation subqueries, NULL handling and ordering are shared; each dialect
(:mod:`parsectl.storage.sqlite_query`, :mod:`parsectl.storage.postgres_query`) says how its columns
hold arrays, JSON paths, dates, regexes and permission arrays. Every value is bound as a parameter;
every identifier goes through :func:`quote`.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from parsectl.model import codec, query
from parsectl.model.codec import FieldType
from parsectl.model.query import SortKey
from parsectl.model.schema import ClassSchema
from parsectl.storage.geo_sql import GeoTextSQL

JSON_TYPES = frozenset(("Object", "Array", "GeoPoint", "Polygon", "Bytes"))
SYSTEM_COLUMNS = ("objectId", "createdAt", "updatedAt", "_rperm", "_wperm")
_DATE_COLUMNS = {"createdAt", "updatedAt"}
_PATH = re.compile(r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$")
_OPERATORS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def join_table(field: str, owner_class: str) -> str:
    return f"_Join:{field}:{owner_class}"


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


# where orjson wrote an integral float below 2**53 ("3.0"; larger ones it writes as 1e+16): a number token
# (after ':', '[', ',' or at the start) ending in ".0". Also matches such text inside strings: then the
# value is walked for nothing, which is only slower.
_INTEGRAL_FLOAT = re.compile(rb"(?:^|[:\[,])-?\d+\.0(?=[,\]}]|$)")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and integral numbers written as integers (so 1 and 1.0 compare equal)."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if b".0" not in text or not _INTEGRAL_FLOAT.search(text):  # no float to write as an integer (the common case: no walk)
        return text.decode()
    return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS).decode()


_COMPARABLE = {
    "Number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "String": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "Date": lambda v: codec.date_iso(v) is not None,
}


def comparable(kind: str | None, value: Any) -> bool:
    """Whether a range comparison of a ``kind`` column with ``value`` can match (as MongoDB's type brackets)."""
    check = _COMPARABLE.get(kind or "")
    return check(value) if check else True


class Column:
    """A field reference: its SQL expression, the schema type it holds (None if unknown), and whether
    it is a path into an Object column (whose values keep their JSON types)."""

    __slots__ = ("sql", "type", "path")

    def __init__(self, sql: str, type_: FieldType | None, path: bool = False) -> None:
        self.sql = sql
        self.type = type_
        self.path = path

    @property
    def kind(self) -> str | None:
        return self.type["type"] if self.type else None


class SQLCompiler(GeoTextSQL):
    PLACEHOLDER = "?"
    TRUE = "1"
    FALSE = "0"

    def __init__(self, schema: ClassSchema) -> None:
        self.schema = schema
        self.params: list[Any] = []

    # --- dialect hooks ------------------------------------------------------------------------------------
    def json_path(self, column: str, parts: list[str]) -> str:
        raise NotImplementedError

    def storage_value(self, col: Column, value: Any) -> Any:
        """A wire value as the column holds it."""
        raise NotImplementedError

    def path_equals(self, col: Column, value: Any) -> str:
        raise NotImplementedError

    def path_compare(self, col: Column, op: str, value: Any) -> str:
        raise NotImplementedError

    def array_has(self, col: Column, values: list[Any]) -> str:
        """The array column holds at least one of ``values``."""
        raise NotImplementedError

    def array_has_all(self, col: Column, values: list[Any]) -> str:
        return "(" + " AND ".join(self.array_has(col, [v]) for v in values) + ")"

    def array_compare(self, col: Column, op: str, value: Any) -> str:
        raise NotImplementedError

    def array_contained_by(self, col: Column, values: list[Any]) -> str:
        raise NotImplementedError

    def regex(self, col: Column, pattern: str, options: str) -> str:
        raise NotImplementedError

    def array_regex(self, col: Column, pattern: str, options: str) -> str:
        """Some string element of the array column matches."""
        raise NotImplementedError

    def perm_in(self, column: str, group: list[str]) -> str:
        raise NotImplementedError

    # --- values --------------------------------------------------------------------------------------------
    def bind(self, value: Any) -> str:
        self.params.append(value)
        return self.PLACEHOLDER

    def column(self, field: str) -> Column:
        if field in ("objectId", "_rperm", "_wperm"):
            return Column(quote(field), {"type": "String"})
        if field in _DATE_COLUMNS:
            return Column(quote(field), {"type": "Date"})
        if "." in field:
            top, _, rest = field.partition(".")
            ftype = self.schema.fields.get(top)
            if ftype and ftype["type"] == "Object" and _PATH.match(rest):
                return Column(self.json_path(quote(top), rest.split(".")), None, path=True)
            return Column("NULL", None)
        ftype = self.schema.fields.get(field)
        if ftype is None or ftype["type"] in ("Relation", "ACL"):
            return Column("NULL", ftype)
        return Column(quote(field), ftype)

    # --- nodes -----------------------------------------------------------------------------------------
    def compile(self, node: query.Node) -> str:
        return getattr(self, "_" + type(node).__name__)(node)

    def _MatchAll(self, node: query.MatchAll) -> str:
        return self.TRUE

    def _MatchNone(self, node: query.MatchNone) -> str:
        return self.FALSE

    def _And(self, node: query.And) -> str:
        if not node.children:
            return self.TRUE
        return "(" + " AND ".join(self.compile(c) for c in node.children) + ")"

    def _Or(self, node: query.Or) -> str:
        if not node.children:
            return self.FALSE
        return "(" + " OR ".join(self.compile(c) for c in node.children) + ")"

    def negate(self, sql: str) -> str:
        """NOT, with NULL (an unknown comparison) counting as false, as MongoDB's ``$nor``/``$ne`` do."""
        return f"(NOT COALESCE({sql}, {self.FALSE}))"

    def _Not(self, node: query.Not) -> str:
        return self.negate(self.compile(node.child))

    def _relation_owners(self, field: str, related_ids: list[str]) -> str:
        if not related_ids:
            return self.FALSE
        table = quote(join_table(field, self.schema.class_name))
        marks = ", ".join(self.bind(i) for i in related_ids)
        return f'("objectId" IN (SELECT "owningId" FROM {table} WHERE "relatedId" IN ({marks})))'

    def _RelatedTo(self, node: query.RelatedTo) -> str:
        table = quote(join_table(node.key, node.owner["className"]))
        owner = self.bind(node.owner["objectId"])
        return f'("objectId" IN (SELECT "relatedId" FROM {table} WHERE "owningId" = {owner}))'

    def equals(self, col: Column, field: str, value: Any) -> str:
        if value is None:
            return f"({col.sql} IS NULL)"
        if col.kind == "Relation":
            return self._relation_owners(field, [value["objectId"]] if codec.is_pointer(value) else [])
        if col.path:
            return self.path_equals(col, value)
        if col.kind == "Array" and not isinstance(value, list):
            return self.array_has(col, [value])
        return f"({col.sql} = {self.bind(self.storage_value(col, value))})"

    def _Compare(self, node: query.Compare) -> str:
        col = self.column(node.field)
        if node.op == "eq":
            return self.equals(col, node.field, node.value)
        if node.op == "ne":
            if node.value is None:
                return f"({col.sql} IS NOT NULL)"
            return self.negate(self.equals(col, node.field, node.value))
        op = _OPERATORS[node.op]
        if node.value is None or col.sql == "NULL":
            return self.FALSE
        if col.path:
            return self.path_compare(col, op, node.value)
        if col.kind == "Array" and not isinstance(node.value, list):
            return self.array_compare(col, op, node.value)
        if not comparable(col.kind, node.value):
            return self.FALSE
        return f"({col.sql} {op} {self.bind(self.storage_value(col, node.value))})"

    def _In(self, node: query.In) -> str:
        col = self.column(node.field)
        values = [v for v in node.values if v is not None]
        parts: list[str] = []
        if col.kind == "Relation":
            parts.append(self._relation_owners(node.field, [v["objectId"] for v in values if codec.is_pointer(v)]))
        elif col.kind == "Array":
            parts.append(self.array_has(col, values) if values else self.FALSE)
        elif col.path:
            parts.extend(self.path_equals(col, v) for v in values)
        elif values:
            marks = ", ".join(self.bind(self.storage_value(col, v)) for v in values)
            parts.append(f"({col.sql} IN ({marks}))")
        if len(values) != len(node.values):
            parts.append(f"({col.sql} IS NULL)")
        sql = "(" + " OR ".join(parts) + ")" if parts else self.FALSE
        if node.negate:
            # parse-server on PostgreSQL: NOT IN leaves out objects without a value ($notInQuery too)
            return f"(NOT {sql})" if values else self.TRUE
        return sql

    def _All(self, node: query.All) -> str:
        col = self.column(node.field)
        if not node.values:
            return self.FALSE
        if col.kind != "Array":
            return self._And(query.And([query.Compare(node.field, "eq", v) for v in node.values]))
        return self.array_has_all(col, node.values)

    def _ContainedBy(self, node: query.ContainedBy) -> str:
        col = self.column(node.field)
        if col.kind != "Array":
            return self.FALSE
        return self.array_contained_by(col, node.values)

    def _Exists(self, node: query.Exists) -> str:
        col = self.column(node.field)
        if col.kind == "Relation":
            return self.TRUE if node.exists else self.FALSE
        return f"({col.sql} IS {'NOT ' if node.exists else ''}NULL)"

    def _Regex(self, node: query.Regex) -> str:
        col = self.column(node.field)
        if col.sql == "NULL":
            return self.FALSE
        if col.kind == "Array":
            return self.array_regex(col, node.pattern, node.options)
        return self.regex(col, node.pattern, node.options)

    def _PermIn(self, node: query.PermIn) -> str:
        return self.perm_in(quote(node.perm), node.group)

    def _InQuery(self, node: query.Node) -> str:
        raise AssertionError("subqueries must be resolved before compiling")

    _Select = _InQuery

    # --- ordering ---------------------------------------------------------------------------------------
    def order_by(self, order: list[SortKey]) -> str:
        parts = []
        scores, trailing = self.geo_text_order(order)  # $score keys; $nearSphere: nearest first
        for i, key in enumerate(order):
            if i in scores:
                parts.append(scores[i])
                continue
            top = key.field.split(".", 1)[0]
            if key.field not in ("objectId", "createdAt", "updatedAt") and top not in self.schema.fields:
                continue
            col = self.column(key.field)
            if col.sql == "NULL":
                continue
            parts.append(f"{col.sql} {'DESC NULLS FIRST' if key.descending else 'ASC NULLS LAST'}")
        parts.extend(trailing)
        return (" ORDER BY " + ", ".join(parts)) if parts else ""
