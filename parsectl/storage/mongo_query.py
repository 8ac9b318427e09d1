"""Parsed queries (:mod:`parsectl.model.query`) compiled to MongoDB filters on parse-server's Mongo layout.

Field names and values are translated as parse-server's ``MongoTransform`` does: ``objectId`` is
``_id``, ``createdAt``/``updatedAt`` are ``_created_at``/``_updated_at`` (BSON dates), a Pointer field
``f`` is ``_p_f`` holding ``"Class$objectId"``, Files are their names, GeoPoints ``[lng, lat]``, Bytes
BSON binary, dates (also inside objects and arrays) BSON dates, ``sessionToken`` is ``_session_token``
and ``authData.<provider>...`` on ``_User`` is ``_auth_data_<provider>...``.

The semantics are those of the SQL adapters (:mod:`parsectl.storage.sql`), which follow parse-server
on PostgreSQL where the two backends differ: ``$nin``/``$notInQuery`` leave out objects without a
value, ``$exists`` looks at null-ness, range comparisons are type-bracketed (MongoDB does this
natively), and a missing ``_rperm``/``_wperm`` is public (as parse-server's ``{"$in": [null, ...]}``).

Relation constraints (``$relatedTo``, equality with a pointer on a Relation field) read the
``_Join:<field>:<Class>`` collection first, through the ``join_lookup`` callback, and become an
``_id`` ``$in`` filter, as parse-server's DatabaseController does.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bson.binary import Binary

from parsectl.model import codec, geo_text, query
from parsectl.model.codec import FieldType
from parsectl.model.query import QUOTED_PATTERN, SortKey
from parsectl.model.schema import ClassSchema

MATCH_NONE: dict[str, Any] = {"_id": {"$in": []}}
SYSTEM_KEYS = {"objectId": "_id", "createdAt": "_created_at", "updatedAt": "_updated_at"}
# Keys parse-server renames for every class (MongoTransform.transformKey).
RENAMED_KEYS = {"sessionToken": "_session_token"}

# join_lookup(join collection name (unprefixed), filter, field to return) -> values of that field
JoinLookup = Callable[[str, dict[str, Any], str], Awaitable[list[str]]]


def join_collection(field: str, owner_class: str) -> str:
    return f"_Join:{field}:{owner_class}"


def to_datetime(value: Any) -> datetime | None:
    iso = codec.date_iso(value)
    return codec.parse_iso(iso) if iso else None


def pointer_string(value: Any, target: str | None = None) -> Any:
    """A pointer as parse-server stores it in ``_p_<field>`` (a bare objectId gets the target class)."""
    if codec.is_pointer(value):
        return f"{value['className']}${value['objectId']}"
    if isinstance(value, str) and target:
        return f"{target}${value}"
    return value


def geo_point(value: dict[str, Any]) -> list[float]:
    return [value["longitude"], value["latitude"]]


def geo_polygon(value: dict[str, Any]) -> dict[str, Any]:
    ring = [[lng, lat] for lat, lng in value["coordinates"]]
    if ring and ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    return {"type": "Polygon", "coordinates": [ring]}


def interior(value: Any) -> Any:
    """A wire value nested in an Object or Array, as parse-server stores it (dates as BSON dates)."""
    if isinstance(value, dict):
        if value.get("__type") == "Date":
            return to_datetime(value)
        if "__type" in value:
            return value
        return {k: interior(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interior(v) for v in value]
    return value


def top_level(ftype: FieldType | None, value: Any) -> Any:
    """A storage-form value of a field of type ``ftype`` as parse-server stores it at the top level."""
    if value is None:
        return None
    kind = ftype["type"] if ftype else None
    if isinstance(value, dict):
        t = value.get("__type")
        if t == "Date" or (kind == "Date" and t is None):
            return to_datetime(value)
        if t == "Pointer":
            return pointer_string(value)
        if t == "File" and kind in ("File", None):
            return value["name"]
        if t == "GeoPoint" and kind in ("GeoPoint", None):
            return geo_point(value)
        if t == "Polygon" and kind in ("Polygon", None):
            return geo_polygon(value)
        if t == "Bytes" and kind in ("Bytes", None):
            return Binary(base64.b64decode(value["base64"]))
        return interior(value)
    if isinstance(value, str) and kind == "Date":
        return to_datetime(value) or value
    if isinstance(value, str) and kind == "Pointer":
        return pointer_string(value, ftype.get("targetClass") if ftype else None)
    if isinstance(value, list):
        return interior(value)
    return value


def mongo_regex(pattern: str) -> str:
    """A Parse ``$regex`` with the SDKs' ``\\Q...\\E`` quoting spelled out (not every server knows \\Q)."""
    return QUOTED_PATTERN.sub(lambda m: re.escape(m.group(1)), pattern)


SCORE_FIELD = "__parsectl_score"  # a $text query's score ({"$meta": "textScore"}) while it is read


class MongoGeoText:
    """Geo and full-text nodes (:mod:`parsectl.model.geo_text`) as parse-server's MongoTransform writes
    them: legacy ``[lng, lat]`` pairs with ``$nearSphere``/``$maxDistance`` (radians), ``$geoWithin``
    with ``$box``/``$polygon``/``$centerSphere`` (parse-server sends ``$box`` as ``$within``, MongoDB's
    older name of the same operator), ``$geoIntersects`` with a GeoJSON point, and a top-level ``$text``.

    ``$nearSphere`` sorts nearest first only at the top of the query and when no order is given
    (``near_sorted``); otherwise (an explicit order, a count, inside ``$or``/``$nor``) it becomes the
    same test without ordering, ``$geoWithin.$centerSphere``, as parse-server does for counts.
    The adapter reads ``near_keys``/``text_keys`` to create the 2d and text indexes the query needs."""

    near_sorted: bool = True

    def init_geo_text(self) -> None:
        self.nested = 0
        self.near_keys: list[str] = []
        self.text_keys: list[str] = []
        self.geo_text = False  # the query has a geo or text constraint (for error reporting)

    def field(self, name: str) -> Field:
        raise NotImplementedError

    def _geo_key(self, name: str, kind: str) -> str | None:
        self.geo_text = True
        f = self.field(name)
        return f.key if f.kind == kind and not f.path else None

    async def _NearSphere(self, node: geo_text.NearSphere) -> dict[str, Any]:
        key = self._geo_key(node.field, "GeoPoint")
        if key is None:
            return dict(MATCH_NONE)
        center = [node.point.longitude, node.point.latitude]
        radius = node.max_distance
        if radius is not None and (not math.isfinite(radius) or radius >= math.pi):
            radius = None  # the whole sphere
        if self.near_sorted and not self.nested:
            self.near_keys.append(key)
            cond: dict[str, Any] = {"$nearSphere": center}
            if radius is not None:
                cond["$maxDistance"] = radius
            return {key: cond}
        return _center_sphere(key, center, radius)

    async def _WithinSphere(self, node: geo_text.WithinSphere) -> dict[str, Any]:
        key = self._geo_key(node.field, "GeoPoint")
        if key is None:
            return dict(MATCH_NONE)
        return _center_sphere(key, [node.center.longitude, node.center.latitude], node.radius)

    async def _WithinBox(self, node: geo_text.WithinBox) -> dict[str, Any]:
        key = self._geo_key(node.field, "GeoPoint")
        if key is None:
            return dict(MATCH_NONE)
        return {key: {"$geoWithin": {"$box": [[node.west, node.south], [node.east, node.north]]}}}

    async def _WithinPolygon(self, node: geo_text.WithinPolygon) -> dict[str, Any]:
        key = self._geo_key(node.field, "GeoPoint")
        if key is None:
            return dict(MATCH_NONE)
        return {key: {"$geoWithin": {"$polygon": [list(v) for v in node.vertices]}}}

    async def _GeoIntersects(self, node: geo_text.GeoIntersects) -> dict[str, Any]:
        key = self._geo_key(node.field, "Polygon")
        if key is None:
            return dict(MATCH_NONE)
        point = {"type": "Point", "coordinates": [node.point.longitude, node.point.latitude]}
        return {key: {"$geoIntersects": {"$geometry": point}}}

    async def _TextSearch(self, node: geo_text.TextSearch) -> dict[str, Any]:
        key = self._geo_key(node.field, "String")
        if key is None:
            return dict(MATCH_NONE)
        self.text_keys.append(key)
        search: dict[str, Any] = {"$search": node.term, "$language": node.language}
        if node.case_sensitive:
            search["$caseSensitive"] = True
        if node.diacritic_sensitive:
            search["$diacriticSensitive"] = True
        return {"$text": search}


def _center_sphere(key: str, center: list[float], radius: float | None) -> dict[str, Any]:
    if radius is None or not math.isfinite(radius) or radius >= math.pi:
        return {key: {"$ne": None}}  # the whole sphere: every point
    return {key: {"$geoWithin": {"$centerSphere": [center, radius]}}}


class Field:
    """A query field: its Mongo key, its schema type (None if unknown) and whether it is a path into an Object."""

    __slots__ = ("key", "type", "path")

    def __init__(self, key: str, type_: FieldType | None, path: bool = False) -> None:
        self.key = key
        self.type = type_
        self.path = path

    @property
    def kind(self) -> str | None:
        return self.type["type"] if self.type else None


class MongoCompiler(MongoGeoText):
    def __init__(self, schema: ClassSchema, join_lookup: JoinLookup | None = None) -> None:
        self.schema = schema
        self.join_lookup = join_lookup
        self.init_geo_text()

    # --- fields and values ----------------------------------------------------------------------------------
    def field(self, name: str) -> Field:
        if name in SYSTEM_KEYS:
            return Field(SYSTEM_KEYS[name], {"type": "Date"} if name != "objectId" else {"type": "String"})
        if name in ("_rperm", "_wperm"):
            return Field(name, {"type": "Array"})
        if name in RENAMED_KEYS:
            return Field(RENAMED_KEYS[name], self.schema.fields.get(name) or {"type": "String"})
        if "." in name:
            top, _, rest = name.partition(".")
            ftype = self.schema.fields.get(top)
            if self.schema.class_name == "_User" and top == "authData":
                provider, _, sub = rest.partition(".")
                return Field(f"_auth_data_{provider}" + (f".{sub}" if sub else ""), None, path=True)
            return Field(name, None, path=bool(ftype and ftype["type"] == "Object"))
        ftype = self.schema.fields.get(name)
        if ftype is not None and ftype["type"] == "Pointer":
            return Field(f"_p_{name}", ftype)
        return Field(name, ftype)

    def value(self, f: Field, value: Any) -> Any:
        if f.path:
            return interior(value)
        if f.kind == "Array" and not isinstance(value, list):
            return interior(value)
        return top_level(f.type, value)

    # --- nodes ----------------------------------------------------------------------------------------------------
    async def compile(self, node: query.Node) -> dict[str, Any]:
        return await getattr(self, "_" + type(node).__name__)(node)

    async def _MatchAll(self, node: query.MatchAll) -> dict[str, Any]:
        return {}

    async def _MatchNone(self, node: query.MatchNone) -> dict[str, Any]:
        return dict(MATCH_NONE)

    async def _And(self, node: query.And) -> dict[str, Any]:
        parts = [p for p in [await self.compile(c) for c in node.children] if p != {}]
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}

    async def _Or(self, node: query.Or) -> dict[str, Any]:
        if not node.children:
            return dict(MATCH_NONE)
        self.nested += 1  # $nearSphere may not sort inside $or/$nor (MongoDB refuses it there)
        parts = [await self.compile(c) for c in node.children]
        self.nested -= 1
        if any(p == {} for p in parts):
            return {}
        return parts[0] if len(parts) == 1 else {"$or": parts}

    async def _Not(self, node: query.Not) -> dict[str, Any]:
        self.nested += 1
        child = await self.compile(node.child)
        self.nested -= 1
        return {"$nor": [child]}

    async def _lookup(self, join: str, match: dict[str, Any], want: str) -> list[str]:
        if self.join_lookup is None:
            raise RuntimeError("relation queries need a join_lookup")
        return await self.join_lookup(join, match, want)

    async def _relation_owners(self, field: str, related_ids: list[str]) -> list[str]:
        if not related_ids:
            return []
        return await self._lookup(join_collection(field, self.schema.class_name),
                                  {"relatedId": {"$in": related_ids}}, "owningId")

    async def _RelatedTo(self, node: query.RelatedTo) -> dict[str, Any]:
        ids = await self._lookup(join_collection(node.key, node.owner["className"]),
                                 {"owningId": node.owner["objectId"]}, "relatedId")
        return {"_id": {"$in": ids}}

    async def _equals(self, f: Field, name: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {f.key: None}
        if f.kind == "Relation":
            ids = [value["objectId"]] if codec.is_pointer(value) else []
            return {"_id": {"$in": await self._relation_owners(name, ids)}}
        if f.kind in ("GeoPoint", "Polygon") and not f.path and not (
                isinstance(value, dict) and value.get("__type") == f.kind):
            return dict(MATCH_NONE)
        return {f.key: {"$eq": self.value(f, value)}}

    async def _Compare(self, node: query.Compare) -> dict[str, Any]:
        f = self.field(node.field)
        if node.op == "eq":
            return await self._equals(f, node.field, node.value)
        if node.op == "ne":
            if node.value is None:
                return {f.key: {"$ne": None}}
            return {"$nor": [await self._equals(f, node.field, node.value)]}
        if node.value is None or f.kind == "Relation":
            return dict(MATCH_NONE)
        if f.kind == "Date" and not f.path and to_datetime(node.value) is None:
            return dict(MATCH_NONE)
        return {f.key: {f"${node.op}": self.value(f, node.value)}}

    async def _In(self, node: query.In) -> dict[str, Any]:
        f = self.field(node.field)
        values = [v for v in node.values if v is not None]
        has_null = len(values) != len(node.values)
        if f.kind == "Relation":
            owners = await self._relation_owners(node.field, [v["objectId"] for v in values if codec.is_pointer(v)])
            if node.negate:
                return {"_id": {"$nin": owners}} if values else {}
            return {"_id": {"$in": owners}}
        stored = [self.value(f, v) for v in values]
        if node.negate:
            # parse-server on PostgreSQL: NOT IN leaves out objects without a value ($notInQuery too)
            if not values:
                return {}
            present: dict[str, Any] = {"$exists": True} if f.kind == "Array" else {"$ne": None}
            return {f.key: {"$nin": stored + ([None] if has_null else []), **present}}
        if has_null:
            stored.append(None)
        return {f.key: {"$in": stored}} if stored else dict(MATCH_NONE)

    async def _All(self, node: query.All) -> dict[str, Any]:
        f = self.field(node.field)
        if not node.values:
            return dict(MATCH_NONE)
        if f.kind != "Array":
            return await self._And(query.And([query.Compare(node.field, "eq", v) for v in node.values]))
        return {f.key: {"$all": [self.value(f, v) for v in node.values]}}

    async def _ContainedBy(self, node: query.ContainedBy) -> dict[str, Any]:
        f = self.field(node.field)
        if f.kind != "Array":
            return dict(MATCH_NONE)
        return {f.key: {"$not": {"$elemMatch": {"$nin": [self.value(f, v) for v in node.values]}}}}

    async def _Exists(self, node: query.Exists) -> dict[str, Any]:
        f = self.field(node.field)
        if f.kind == "Relation":
            return {} if node.exists else dict(MATCH_NONE)
        if f.kind == "Array":
            return {f.key: {"$exists": node.exists}}
        return {f.key: {"$ne": None}} if node.exists else {f.key: None}

    async def _Regex(self, node: query.Regex) -> dict[str, Any]:
        f = self.field(node.field)
        if f.kind == "Relation":
            return dict(MATCH_NONE)
        options = "".join(c for c in node.options if c in "imxs")
        cond: dict[str, Any] = {"$regex": mongo_regex(node.pattern)}
        if options:
            cond["$options"] = options
        return {f.key: cond}

    async def _PermIn(self, node: query.PermIn) -> dict[str, Any]:
        # parse-server's addReadACL/addWriteACL: a missing (or null) permission array is public
        return {node.perm: {"$in": [None, *node.group]}}

    async def _InQuery(self, node: query.Node) -> dict[str, Any]:
        raise AssertionError("subqueries must be resolved before compiling")

    _Select = _InQuery

    # --- ordering -----------------------------------------------------------------------------------------------
    def sort(self, order: list[SortKey]) -> list[tuple[str, int]]:
        keys: list[tuple[str, int]] = []
        for key in order:
            if key.field == "$score":
                if SCORE_FIELD not in (k for k, _ in keys):
                    keys.append((SCORE_FIELD, -1))  # best first, whatever the direction asked
                continue
            top = key.field.split(".", 1)[0]
            if key.field not in SYSTEM_KEYS and top not in self.schema.fields:
                continue
            f = self.field(key.field)
            if f.kind == "Relation" or any(k == f.key for k, _ in keys):
                continue
            keys.append((f.key, -1 if key.descending else 1))
        return keys
