"""MongoDB in parse-server's exact Mongo format (pymongo's asyncio client).

Layout as parse-server 9.10 writes it (``MongoTransform``, ``MongoSchemaCollection``): one collection
per class named ``collectionPrefix + className``; ``_id`` is the objectId; ``_created_at`` /
``_updated_at`` BSON dates; ``_rperm``/``_wperm`` plus the legacy ``_acl`` ({entry: {r, w}});
``_p_<field>`` = ``"Class$objectId"``; Files as names; GeoPoints ``[lng, lat]``; Polygons GeoJSON;
Bytes BSON binary; dates nested in objects and arrays as BSON dates; ``_hashed_password``,
``_auth_data_<provider>`` and the other internal keys on ``_User``; ``sessionToken`` as
``_session_token``. ``_SCHEMA`` documents hold each field as a type string (``"number"``,
``"*Target"``, ``"relation<Target>"``) and ``_metadata`` (``class_permissions`` when not the defaults,
``indexes``, ``fields_options``). Relations live in ``_Join:<field>:<Class>`` collections of
``{relatedId, owningId}`` documents. Node parse-server and ``parsectl serve`` can share the database.

At start-up the adapter creates the ``_User`` and ``_Role`` schemas and the indexes parse-server
creates (``username_1``, ``email_1``, ``case_insensitive_username``/``_email`` with an en_US
strength-2 collation, ``_email_verify_token``, ``_perishable_token``, ``_auth_data_anonymous_id``,
``name_1`` on ``_Role``, ``reqId_1`` and the ``ttl`` index on ``_Idempotency``, whose schema, as a
volatile class, is not stored) and copies each class's indexes into ``_metadata.indexes``.

Queries compile to Mongo filters (:mod:`parsectl.storage.mongo_query`); sort, skip and limit run in
the database. Updates are one ``find_one_and_update`` per object with ``$set``/``$unset``/``$inc``/
``$push``/``$addToSet``/``$pullAll``, so Increment, Add, AddUnique and Remove are atomic.

Schema version: parse-server's Mongo adapter has no schema-change signal by default (only the
optional ``enableSchemaHooks`` change stream). This adapter watches ``_SCHEMA`` with a change stream
when the server supports one (replica sets, and SecantusDB): every change, by any process including
node parse-server, bumps a local counter, so ``schema_version()`` costs nothing per request and is
correct across processes. A counter document would cost a round trip per request, would not see
changes made by node parse-server, and a non-class document in ``_SCHEMA`` would break node
parse-server, which reads every document there as a class. On a standalone server (no change
streams) ``schema_version()`` returns None and the schema controller reloads on a cache miss or an
unexpected type, before anything is refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from bson import json_util
from bson.int64 import Int64
from bson.objectid import ObjectId
from pymongo import AsyncMongoClient, DeleteOne, IndexModel, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from parsectl.model import codec, errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.ops import Add, AddUnique, Delete, Increment, Op, RelationOp, Remove
from parsectl.model.query import Node, SortKey
from parsectl.model.schema import ClassSchema, default_clp
from parsectl.storage import transactions
from parsectl.storage.base import StoredObject
from parsectl.storage.mongo_geo import ensure_query_indexes, query_error, score_projection
from parsectl.storage.mongo_query import (
    MATCH_NONE,
    SCORE_FIELD,
    MongoCompiler,
    interior,
    join_collection,
    top_level,
)
from parsectl.uri import redact

log = logging.getLogger("parsectl.storage.mongo")

SCHEMA_COLLECTION = "_SCHEMA"
_DUPLICATE = "A duplicate value for a field with unique values was provided"

# databaseOptions parse-server passes to the node driver, by the name pymongo knows them.
_CLIENT_OPTIONS = {
    name: name for name in (
        "appName", "authMechanism", "authMechanismProperties", "authSource", "compressors", "connectTimeoutMS",
        "directConnection", "heartbeatFrequencyMS", "loadBalanced", "localThresholdMS", "maxConnecting",
        "maxIdleTimeMS", "maxPoolSize", "maxStalenessSeconds", "minPoolSize", "proxyHost", "proxyPassword",
        "proxyPort", "proxyUsername", "readConcernLevel", "readPreference", "readPreferenceTags", "replicaSet",
        "retryReads", "retryWrites", "serverMonitoringMode", "serverSelectionTimeoutMS", "socketTimeoutMS",
        "srvMaxHosts", "srvServiceName", "tls", "tlsAllowInvalidCertificates", "tlsAllowInvalidHostnames",
        "tlsCAFile", "tlsCertificateKeyFile", "tlsCertificateKeyFilePassword", "tlsInsecure",
        "waitQueueTimeoutMS", "zlibCompressionLevel", "w", "wtimeoutMS", "journal",
    )
}
_CLIENT_OPTIONS["ssl"] = "tls"
# parse-server's own switches (honoured here) and node-driver-only settings (accepted, no effect).
_PARSE_OPTIONS = ("createIndexUserUsername", "createIndexUserUsernameCaseInsensitive", "createIndexUserEmail",
                  "createIndexUserEmailCaseInsensitive", "createIndexUserEmailVerifyToken",
                  "createIndexUserPasswordResetToken", "createIndexRoleName", "createIndexAuthDataUniqueness",
                  "maxTimeMS", "enableSchemaHooks", "schemaCacheTtl", "batchSize")
_IGNORED_OPTIONS = ("autoSelectFamily", "autoSelectFamilyAttemptTimeout", "clientMetadata", "forceServerObjectId",
                    "logClientEvents", "disableIndexFieldValidation", "allowPublicExplain")
DEFAULT_TIMEOUT_MS = 5000

# Internal _User keys (stored under their own names; not in _SCHEMA).
_USER_INTERNAL: dict[str, FieldType] = {
    "_hashed_password": {"type": "String"},
    "_email_verify_token": {"type": "String"},
    "_email_verify_token_expires_at": {"type": "Date"},
    "_perishable_token": {"type": "String"},
    "_perishable_token_expires_at": {"type": "Date"},
    "_password_changed_at": {"type": "Date"},
    "_password_history": {"type": "Array"},
    "_account_lockout_expires_at": {"type": "Date"},
    "_failed_login_count": {"type": "Number"},
    "_tombstone": {"type": "Object"},
}
_STARTUP_CLASSES: dict[str, dict[str, FieldType]] = {"_User": {}, "_Role": {}}
_CASE_INSENSITIVE = {"locale": "en_US", "strength": 2}

_TO_MONGO_TYPE = {"Number": "number", "String": "string", "Boolean": "boolean", "Date": "date", "Object": "object",
                  "Array": "array", "GeoPoint": "geopoint", "File": "file", "Bytes": "bytes", "Polygon": "polygon"}
_FROM_MONGO_TYPE = {v: k for k, v in _TO_MONGO_TYPE.items()} | {"map": "Object"}
_NON_FIELD_KEYS = ("_id", "_metadata", "_client_permissions")


# --- _SCHEMA documents --------------------------------------------------------------------------------


def mongo_field_type(ftype: FieldType) -> str | None:
    kind = ftype["type"]
    if kind == "Pointer":
        return "*" + ftype["targetClass"]
    if kind == "Relation":
        return f"relation<{ftype['targetClass']}>"
    return _TO_MONGO_TYPE.get(kind)


def parse_field_type(text: Any) -> FieldType | None:
    if not isinstance(text, str) or not text:
        return None
    if text.startswith("*"):
        return {"type": "Pointer", "targetClass": text[1:]}
    if text.startswith("relation<") and text.endswith(">"):
        return {"type": "Relation", "targetClass": text[len("relation<"):-1]}
    kind = _FROM_MONGO_TYPE.get(text)
    return {"type": kind} if kind else None


def to_mongo_schema(schema: ClassSchema) -> dict[str, Any]:
    """The ``_SCHEMA`` document parse-server writes for a class."""
    doc: dict[str, Any] = {"_id": schema.class_name, "objectId": "string", "updatedAt": "date", "createdAt": "date"}
    options: dict[str, Any] = {}
    for name, ftype in schema.fields.items():
        if name in ("objectId", "createdAt", "updatedAt", "_rperm", "_wperm") or ftype["type"] == "ACL":
            continue
        if schema.class_name == "_User" and name in ("password", "_hashed_password"):
            continue
        mongo_type = mongo_field_type(ftype)
        if mongo_type is None:
            continue
        doc[name] = mongo_type
        extra = {k: v for k, v in ftype.items() if k not in ("type", "targetClass")}
        if extra:
            options[name] = extra
    metadata: dict[str, Any] = {}
    if options:
        metadata["fields_options"] = options
    if schema.clp and schema.clp != default_clp():
        metadata["class_permissions"] = schema.clp
    if schema.indexes:
        metadata["indexes"] = schema.indexes
    if metadata:
        doc["_metadata"] = metadata
    return doc


def from_mongo_schema(doc: dict[str, Any]) -> ClassSchema:
    class_name = str(doc["_id"])
    metadata = doc.get("_metadata") or {}
    options = metadata.get("fields_options") or {}
    stored: dict[str, FieldType] = {}
    for name, text in doc.items():
        if name in _NON_FIELD_KEYS or name.startswith("_"):
            continue
        ftype = parse_field_type(text)
        if ftype is None:
            continue
        if isinstance(options.get(name), dict):
            ftype = {**ftype, **options[name]}
        stored[name] = ftype
    schema = ClassSchema.new(class_name, stored)
    clp = metadata.get("class_permissions")
    if clp:
        schema.clp = {**{k: {} for k in default_clp()}, **clp}
        schema.clp.setdefault("protectedFields", {})
    schema.indexes = dict(metadata.get("indexes") or {})
    return schema


# --- documents -------------------------------------------------------------------------------------------


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def legacy_acl(rperm: list[str] | None, wperm: list[str] | None) -> dict[str, dict[str, bool]]:
    """parse-server's ``addLegacyACL``: the ``_acl`` it writes next to ``_rperm``/``_wperm``."""
    acl: dict[str, dict[str, bool]] = {}
    for entry in wperm or ():
        acl[entry] = {"w": True}
    for entry in rperm or ():
        acl.setdefault(entry, {})["r"] = True
    return acl


def decode_interior(value: Any) -> Any:
    if isinstance(value, datetime):
        return codec.date(codec.format_iso(_aware(value)))
    if isinstance(value, bytes):  # Binary is a bytes subclass
        return {"__type": "Bytes", "base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        if value.get("__type") == "Date" and isinstance(value.get("iso"), datetime):
            return decode_interior(value["iso"])
        return {k: decode_interior(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_interior(v) for v in value]
    if isinstance(value, Int64):
        return int(value)
    if isinstance(value, ObjectId):
        return str(value)
    if hasattr(value, "to_decimal"):  # Decimal128
        return float(value.to_decimal())
    return value


def decode_top(ftype: FieldType | None, value: Any) -> Any:
    kind = ftype["type"] if ftype else None
    if kind == "File" and isinstance(value, str):
        return {"__type": "File", "name": value}
    if kind == "GeoPoint" and isinstance(value, list | tuple) and len(value) == 2:
        return {"__type": "GeoPoint", "latitude": value[1], "longitude": value[0]}
    if kind == "Polygon" and isinstance(value, dict) and isinstance(value.get("coordinates"), list):
        ring = value["coordinates"][0] if value["coordinates"] else []
        return {"__type": "Polygon", "coordinates": [[c[1], c[0]] for c in ring]}
    if kind == "Bytes" and isinstance(value, str):
        return {"__type": "Bytes", "base64": value}
    if kind == "Date" and isinstance(value, str):
        iso = codec.date_iso(value)
        return codec.date(iso) if iso else value
    return decode_interior(value)


class MongoAdapter:
    """A :class:`parsectl.storage.base.StorageAdapter` on MongoDB in parse-server's format."""

    def __init__(self, uri: str, *, collection_prefix: str = "", options: dict[str, Any] | None = None) -> None:
        options = dict(options or {})
        unknown = sorted(k for k in options if k not in _CLIENT_OPTIONS and k not in _PARSE_OPTIONS
                         and k not in _IGNORED_OPTIONS)
        if unknown:
            raise ValueError(f"unknown databaseOptions for MongoDB: {', '.join(unknown)} "
                             f"(known: {', '.join(sorted([*_CLIENT_OPTIONS, *_PARSE_OPTIONS, *_IGNORED_OPTIONS]))})")
        self._pair_indexes: dict[str, bool] = {}
        self._geo_text_indexes: set[tuple[str, str, str]] = set()  # (collection, key, kind) made
        self.uri = uri
        self.prefix = collection_prefix or ""
        self.options = options
        client_kwargs: dict[str, Any] = {_CLIENT_OPTIONS[k]: v for k, v in options.items() if k in _CLIENT_OPTIONS}
        client_kwargs.setdefault("serverSelectionTimeoutMS", DEFAULT_TIMEOUT_MS)
        client_kwargs.setdefault("connectTimeoutMS", DEFAULT_TIMEOUT_MS)
        self._client_kwargs = client_kwargs
        self._max_time_ms = options.get("maxTimeMS")
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: Any = None
        self._version = 0
        self._watching = False
        self._watcher: asyncio.Task[None] | None = None

    # --- connection ------------------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
                self.uri, tz_aware=True, connect=False, **self._client_kwargs)
        except PyMongoError as exc:
            raise ValueError(f"invalid MongoDB databaseURI or databaseOptions ({redact(self.uri)}): {exc}") from None
        try:
            await client.admin.command("ping")
        except PyMongoError as exc:
            await client.close()
            first = str(exc).strip().split(", Timeout:")[0].splitlines()[0]
            raise ConnectionError(f"cannot connect to MongoDB at {redact(self.uri)}: {first}") from None
        self.client = client
        # parse-server (node driver) uses the database named in the URI, else "test"
        self.db = client.get_default_database("test")
        await self._check_server()
        for class_name, fields in _STARTUP_CLASSES.items():
            await self.ensure_class(ClassSchema.new(class_name, fields))
        await self._create_startup_indexes()
        await self._copy_indexes_to_schema()
        await self._start_watching()

    async def close(self) -> None:
        if self._watcher is not None:
            # Cancelling a change stream mid-getMore and then closing its cursor can wait forever for a
            # killCursors reply (seen with SecantusDB): do not wait long; closing the client ends it.
            self._watcher.cancel()
            await asyncio.wait([self._watcher], timeout=1)
            self._watcher = None
        if self.client is not None:
            await self.client.close()
            self.client = None

    def _coll(self, name: str) -> Any:
        return transactions.mongo_collection(self, self.db[self.prefix + name])

    def transaction(self) -> Any:
        """All storage calls of this task in one transaction (parsectl.storage.transactions)."""
        return transactions.mongo_transaction(self)

    def _op_kwargs(self) -> dict[str, Any]:
        return {"maxTimeMS": self._max_time_ms} if self._max_time_ms else {}

    async def _check_server(self) -> None:
        try:
            info = await self.client.admin.command("buildInfo")  # type: ignore[union-attr]
        except PyMongoError as exc:
            log.warning("cannot read the MongoDB server version (buildInfo): %s", exc)
            return
        version = tuple(int(x) for x in (info.get("versionArray") or [])[:2] if isinstance(x, int))
        if version and version < (4, 4):
            try:
                reply = await self.client.admin.command(  # type: ignore[union-attr]
                    {"getParameter": 1, "failIndexKeyTooLong": 1})
            except PyMongoError as exc:
                log.warning("cannot read failIndexKeyTooLong: %s", exc)
                return
            if reply.get("failIndexKeyTooLong"):
                log.warning(
                    "MongoDB %s has failIndexKeyTooLong=true: writing a string longer than about 1KB to an indexed "
                    "field (username, email, ...) fails. Run db.adminCommand({setParameter: 1, "
                    "failIndexKeyTooLong: false}) or start mongod with --setParameter failIndexKeyTooLong=false "
                    "(or upgrade to MongoDB 4.4+, which has no index key limit).", info.get("version"))

    async def _create_startup_indexes(self) -> None:
        opts = self.options
        indexes: list[tuple[str, str, list[tuple[str, int]], dict[str, Any]]] = []
        sparse_unique = {"unique": True, "background": True, "sparse": True}
        plain = {"background": True, "sparse": True}
        if opts.get("createIndexUserUsername") is not False:
            indexes.append(("_User", "username_1", [("username", 1)], sparse_unique))
            if opts.get("createIndexUserUsernameCaseInsensitive") is not False:
                indexes.append(("_User", "case_insensitive_username", [("username", 1)],
                                {**plain, "collation": _CASE_INSENSITIVE}))
        if opts.get("createIndexUserEmail") is not False:
            indexes.append(("_User", "email_1", [("email", 1)], sparse_unique))
            if opts.get("createIndexUserEmailCaseInsensitive") is not False:
                indexes.append(("_User", "case_insensitive_email", [("email", 1)],
                                {**plain, "collation": _CASE_INSENSITIVE}))
        if opts.get("createIndexUserEmailVerifyToken") is not False:
            indexes.append(("_User", "_email_verify_token", [("_email_verify_token", 1)], plain))
        if opts.get("createIndexUserPasswordResetToken") is not False:
            indexes.append(("_User", "_perishable_token", [("_perishable_token", 1)], plain))
        if opts.get("createIndexRoleName") is not False:
            indexes.append(("_Role", "name_1", [("name", 1)], sparse_unique))
        indexes.append(("_Idempotency", "reqId_1", [("reqId", 1)], sparse_unique))
        indexes.append(("_Idempotency", "ttl", [("expire", 1)], {**plain, "expireAfterSeconds": 0}))
        if opts.get("createIndexAuthDataUniqueness") is not False:
            indexes.append(("_User", "_auth_data_anonymous_id", [("_auth_data_anonymous.id", 1)], sparse_unique))
        for class_name, name, keys, kwargs in indexes:
            try:
                await self._coll(class_name).create_index(keys, name=name, **kwargs)
            except OperationFailure as exc:
                if exc.code in (85, 86):  # an index of that name or keys exists already with other options
                    continue
                log.warning("cannot create index %s on %s%s: %s", name, self.prefix, class_name, exc)
            except PyMongoError as exc:
                log.warning("cannot create index %s on %s%s: %s", name, self.prefix, class_name, exc)

    async def _copy_indexes_to_schema(self) -> None:
        """parse-server's ``updateSchemaWithIndexes``: each class's Mongo indexes into ``_metadata.indexes``."""
        schemas = self._coll(SCHEMA_COLLECTION)
        async for doc in schemas.find({}, {"_id": 1}):
            try:
                indexes: dict[str, Any] = {}
                async for index in await self._coll(str(doc["_id"])).list_indexes():
                    key = dict(index["key"])
                    if "_fts" in key:
                        key.pop("_fts")
                        key.pop("_ftsx", None)
                        for field in index.get("weights", {}):
                            key[field] = "text"
                    indexes[index["name"]] = key
                if indexes:
                    await schemas.update_one({"_id": doc["_id"]}, {"$set": {"_metadata.indexes": indexes}})
            except PyMongoError as exc:
                log.debug("cannot copy the indexes of %s into _SCHEMA: %s", doc["_id"], exc)

    async def _start_watching(self) -> None:
        try:
            stream = await self._coll(SCHEMA_COLLECTION).watch()
        except PyMongoError as exc:
            log.info("no change streams on this MongoDB (%s); schema changes by other processes are picked up "
                     "on a cache miss", exc)
            return
        self._watching = True
        self._watcher = asyncio.create_task(self._watch(stream))

    async def _watch(self, stream: Any) -> None:
        """Follow every change to ``_SCHEMA`` (by any process) to keep ``schema_version`` current."""
        while True:
            try:
                async for _change in stream:
                    self._version += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep watching across failovers and restarts
                log.warning("_SCHEMA change stream restarting after: %s", exc)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(stream.close(), 2)
            self._version += 1
            await asyncio.sleep(0.5)
            try:
                stream = await self._coll(SCHEMA_COLLECTION).watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("cannot reopen the _SCHEMA change stream: %s", exc)
                self._watching = False
                return

    # --- schema -------------------------------------------------------------------------------------------
    async def schema_version(self) -> int | None:
        return self._version if self._watching else None

    async def load_schemas(self) -> dict[str, ClassSchema]:
        out: dict[str, ClassSchema] = {}
        async for doc in self._coll(SCHEMA_COLLECTION).find({}):
            schema = from_mongo_schema(doc)
            out[schema.class_name] = schema
        return out

    async def _read_schema(self, class_name: str) -> ClassSchema | None:
        doc = await self._coll(SCHEMA_COLLECTION).find_one({"_id": class_name})
        return from_mongo_schema(doc) if doc else None

    async def _stored_schema(self, class_name: str) -> ClassSchema:
        stored = await self._read_schema(class_name)
        if stored is None:
            raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
        return stored

    async def ensure_class(self, schema: ClassSchema) -> ClassSchema:
        stored = await self._read_schema(schema.class_name)
        if stored is not None:
            return stored
        try:
            await self._coll(SCHEMA_COLLECTION).insert_one(to_mongo_schema(schema))
        except DuplicateKeyError:
            return await self._stored_schema(schema.class_name)
        self._version += 1
        for name, ftype in schema.fields.items():
            await self._field_indexes(schema.class_name, name, ftype)
        return await self._stored_schema(schema.class_name)

    async def _field_indexes(self, class_name: str, name: str, ftype: FieldType) -> None:
        if ftype["type"] == "Polygon":  # parse-server's createIndexesIfNeeded
            try:
                await self._coll(class_name).create_index([(name, "2dsphere")])
            except PyMongoError as exc:
                log.warning("cannot create the 2dsphere index on %s.%s: %s", class_name, name, exc)

    async def add_fields(self, class_name: str, fields: dict[str, FieldType]) -> ClassSchema:
        stored = await self._stored_schema(class_name)
        schemas = self._coll(SCHEMA_COLLECTION)
        changed = False
        for name, ftype in fields.items():
            if not stored.check_value_type(name, ftype):
                continue
            if ftype["type"] == "GeoPoint" and any(t["type"] == "GeoPoint" for t in stored.fields.values()):
                raise ParseError(errors.INCORRECT_TYPE, "MongoDB only supports one GeoPoint field in a class.")
            update: dict[str, Any] = {name: mongo_field_type(ftype)}
            extra = {k: v for k, v in ftype.items() if k not in ("type", "targetClass")}
            if extra:
                update[f"_metadata.fields_options.{name}"] = extra
            # $exists: false, as parse-server: never overwrite a type another process just stored
            await schemas.update_one({"_id": class_name, name: {"$exists": False}}, {"$set": update})
            stored.fields[name] = ftype
            changed = True
            await self._field_indexes(class_name, name, ftype)
        if not changed:
            return stored
        self._version += 1
        fresh = await self._stored_schema(class_name)
        for name, ftype in fields.items():
            fresh.check_value_type(name, ftype)  # 111 if another process stored another type meanwhile
        return fresh

    async def set_class_level_permissions(self, class_name: str, clp: dict[str, Any]) -> ClassSchema:
        await self._stored_schema(class_name)
        await self._coll(SCHEMA_COLLECTION).update_one(
            {"_id": class_name}, {"$set": {"_metadata.class_permissions": clp}})
        self._version += 1
        return await self._stored_schema(class_name)

    async def set_indexes(self, class_name: str, indexes: dict[str, Any], create: list[tuple[str, dict[str, Any]]],
                          drop: list[str]) -> ClassSchema:
        await self._stored_schema(class_name)
        coll = self._coll(class_name)
        try:
            for name in drop:
                with contextlib.suppress(OperationFailure):  # already gone: the schema is what counts
                    await coll.drop_index(name)
            if create:
                await coll.create_indexes([IndexModel(list(keys.items()), name=name) for name, keys in create])
        except OperationFailure as exc:  # e.g. an index type MongoDB does not know
            raise ParseError(errors.INVALID_QUERY, str((exc.details or {}).get("errmsg") or exc)) from None
        await self._coll(SCHEMA_COLLECTION).update_one({"_id": class_name}, {"$set": {"_metadata.indexes": indexes}})
        self._version += 1
        return await self._stored_schema(class_name)

    async def delete_fields(self, class_name: str, names: list[str]) -> ClassSchema:
        stored = await self._stored_schema(class_name)
        schema_unset: dict[str, str] = {}
        doc_unset: dict[str, str] = {}
        for name in names:
            ftype = stored.fields.get(name)
            if ftype is None:
                continue
            schema_unset[name] = ""
            schema_unset[f"_metadata.fields_options.{name}"] = ""
            if ftype["type"] == "Relation":
                await self._coll(join_collection(name, class_name)).drop()
            else:
                doc_unset[f"_p_{name}" if ftype["type"] == "Pointer" else name] = ""
        if doc_unset:
            await self._coll(class_name).update_many({}, {"$unset": doc_unset})
        if schema_unset:
            await self._coll(SCHEMA_COLLECTION).update_one({"_id": class_name}, {"$unset": schema_unset})
            self._version += 1
        return await self._stored_schema(class_name)

    async def delete_class(self, schema: ClassSchema) -> None:
        for name in schema.relation_fields():
            await self._coll(join_collection(name, schema.class_name)).drop()
        coll = self._coll(schema.class_name)
        await coll.drop()
        self._geo_text_indexes = {m for m in self._geo_text_indexes if m[0] != coll.name}
        await self._coll(SCHEMA_COLLECTION).delete_one({"_id": schema.class_name})
        self._version += 1

    # --- documents ----------------------------------------------------------------------------------------
    @staticmethod
    def _field_type(schema: ClassSchema, name: str) -> FieldType | None:
        if schema.class_name == "_User" and name in _USER_INTERNAL:
            return _USER_INTERNAL[name]
        return schema.fields.get(name)

    @staticmethod
    def _key(schema: ClassSchema, name: str, ftype: FieldType | None) -> str:
        if ftype is not None and ftype["type"] == "Pointer":
            return f"_p_{name}"
        if name == "sessionToken":
            return "_session_token"
        return name

    def _encode(self, schema: ClassSchema, obj: StoredObject) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        is_user = schema.class_name == "_User"
        for name, value in obj.items():
            if value is None:
                continue
            if name == "objectId":
                doc["_id"] = value
            elif name in ("createdAt", "updatedAt"):
                doc["_created_at" if name == "createdAt" else "_updated_at"] = top_level({"type": "Date"}, value)
            elif name in ("_rperm", "_wperm"):
                doc[name] = list(value)
            elif is_user and name == "authData" and isinstance(value, dict):
                for provider, data in value.items():
                    if data is not None:
                        doc[f"_auth_data_{provider}"] = interior(data)
            elif is_user and name == "password":
                continue
            elif is_user and name == "_session_token":
                doc[name] = value  # hosted Parse's legacy token, kept where parse-server's Mongo format has it
            else:
                ftype = self._field_type(schema, name)
                if ftype is None and name.startswith("_"):
                    continue  # an internal field this class has no place for
                if ftype is None:
                    raise ParseError(errors.INCORRECT_TYPE, f"field {name} is not in the schema of {schema.class_name}")
                if ftype["type"] in ("Relation", "ACL"):
                    continue
                doc[self._key(schema, name, ftype)] = top_level(ftype, value)
        if "_rperm" in doc or "_wperm" in doc:
            doc["_acl"] = legacy_acl(doc.get("_rperm"), doc.get("_wperm"))
        return doc

    def _decode(self, schema: ClassSchema, doc: dict[str, Any]) -> StoredObject:
        obj: StoredObject = {}
        auth: dict[str, Any] = {}
        is_user = schema.class_name == "_User"
        for key, value in doc.items():
            if value is None:
                continue
            if key == "_id":
                obj["objectId"] = str(value)
            elif key in ("_created_at", "_updated_at"):
                name = "createdAt" if key == "_created_at" else "updatedAt"
                obj[name] = codec.format_iso(_aware(value)) if isinstance(value, datetime) else value
            elif key in ("_rperm", "_wperm"):
                obj[key] = list(value)
            elif key.startswith("_p_"):
                name = key[3:]
                ftype = schema.fields.get(name)
                if ftype and ftype["type"] == "Pointer" and isinstance(value, str) and "$" in value:
                    class_name, _, object_id = value.partition("$")
                    obj[name] = codec.pointer(class_name, object_id)
            elif key == "_session_token":
                if "sessionToken" in schema.fields:
                    obj["sessionToken"] = value
                elif is_user:
                    obj["_session_token"] = value  # a legacy hosted-Parse token, never shown to clients
            elif key.startswith("_auth_data_"):
                if is_user:
                    auth[key[len("_auth_data_"):]] = decode_interior(value)
            elif key.startswith("_"):
                if is_user and key in _USER_INTERNAL:
                    obj[key] = decode_top(_USER_INTERNAL[key], value)
            else:
                ftype = schema.fields.get(key)
                if ftype is not None and ftype["type"] in ("ACL", "Relation"):
                    continue
                obj[key] = decode_top(ftype, value)
        if auth:
            obj["authData"] = auth
        return obj

    # --- reads ------------------------------------------------------------------------------------------
    async def _join_lookup(self, join: str, match: dict[str, Any], want: str) -> list[str]:
        return [d[want] async for d in self._coll(join).find(match, {want: 1, "_id": 0}) if want in d]

    def _compiler(self, schema: ClassSchema) -> MongoCompiler:
        return MongoCompiler(schema, self._join_lookup)

    async def find(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                   order: list[SortKey] | None = None) -> list[StoredObject]:
        compiler = self._compiler(schema)
        sort = compiler.sort(order or [])
        compiler.near_sorted = not sort  # $nearSphere orders by distance unless an order is given
        flt = await compiler.compile(where)
        if limit == 0 or flt == MATCH_NONE:
            return []
        coll = self._coll(schema.class_name)
        await ensure_query_indexes(coll, compiler, self._geo_text_indexes, self._coll(SCHEMA_COLLECTION))
        score = score_projection(compiler)
        try:
            if any(key not in ("_id", "_created_at", "_updated_at", SCORE_FIELD) for key, _ in sort):
                docs = await self._find_nulls_last(coll, flt, sort, skip, limit, score)
            else:
                kwargs: dict[str, Any] = self._op_kwargs()
                if sort:
                    kwargs["sort"] = [(k, {"$meta": "textScore"} if k == SCORE_FIELD else d) for k, d in sort]
                if score:
                    kwargs["projection"] = score
                if skip:
                    kwargs["skip"] = int(skip)
                if limit is not None:
                    kwargs["limit"] = int(limit)
                if self.options.get("batchSize"):
                    kwargs["batch_size"] = int(self.options["batchSize"])
                docs = await coll.find(flt, **kwargs).to_list(None)
        except OperationFailure as exc:
            raise (query_error(exc, compiler) or exc) from None
        return [self._decode_scored(schema, d) for d in docs]

    def _decode_scored(self, schema: ClassSchema, doc: dict[str, Any]) -> StoredObject:
        score = doc.pop(SCORE_FIELD, None)
        obj = self._decode(schema, doc)
        if score is not None:
            obj["$score"] = score
        return obj

    async def _find_nulls_last(self, coll: Any, flt: dict[str, Any], sort: list[tuple[str, int]], skip: int,
                               limit: int | None, score: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Sort with missing values last ascending and first descending, as the SQL stores (and PostgreSQL) do."""
        flags: dict[str, Any] = {}
        order: dict[str, int] = {}
        for i, (key, direction) in enumerate(sort):
            if key in ("_id", "_created_at", "_updated_at"):
                order[key] = direction
                continue
            flag = f"__parsectl_null{i}"
            flags[flag] = {"$cond": [{"$eq": [{"$ifNull": [f"${key}", None]}, None]}, 1, 0]}
            order[flag] = direction
            order[key] = direction
        pipeline: list[dict[str, Any]] = [{"$match": flt}, *([{"$addFields": score}] if score else []),
                                          {"$addFields": flags}, {"$sort": order}]
        if skip:
            pipeline.append({"$skip": int(skip)})
        if limit is not None:
            pipeline.append({"$limit": int(limit)})
        pipeline.append({"$project": {flag: 0 for flag in flags}})
        cursor = await coll.aggregate(pipeline, **self._op_kwargs())
        return await cursor.to_list(None)

    async def explain(self, schema: ClassSchema, where: Node, *, skip: int = 0, limit: int | None = None,
                      order: list[SortKey] | None = None) -> Any:
        """MongoDB's explain output for the find, as one JSON document in a list."""
        compiler = self._compiler(schema)
        sort = compiler.sort(order or [])
        compiler.near_sorted = not sort
        flt = await compiler.compile(where)
        kwargs: dict[str, Any] = {}
        if sort:
            kwargs["sort"] = sort
        if skip:
            kwargs["skip"] = int(skip)
        if limit:
            kwargs["limit"] = int(limit)
        plan = await self._coll(schema.class_name).find(flt, **kwargs).explain()
        return [orjson.loads(json_util.dumps(plan, json_options=json_util.RELAXED_JSON_OPTIONS))]

    async def count(self, schema: ClassSchema, where: Node) -> int:
        compiler = self._compiler(schema)
        compiler.near_sorted = False  # a count cannot use $nearSphere: $geoWithin.$centerSphere as parse-server
        flt = await compiler.compile(where)
        if flt == MATCH_NONE:
            return 0
        coll = self._coll(schema.class_name)
        await ensure_query_indexes(coll, compiler, self._geo_text_indexes, self._coll(SCHEMA_COLLECTION))
        try:
            return int(await coll.count_documents(flt, **self._op_kwargs()))
        except OperationFailure as exc:
            raise (query_error(exc, compiler) or exc) from None

    # --- writes -----------------------------------------------------------------------------------------
    async def insert(self, schema: ClassSchema, obj: StoredObject,
                     relations: dict[str, list[str]] | None = None) -> None:
        doc = self._encode(schema, obj)
        try:
            await self._coll(schema.class_name).insert_one(doc)
        except DuplicateKeyError:
            raise ParseError(errors.DUPLICATE_VALUE, _DUPLICATE) from None
        for field, ids in (relations or {}).items():
            await self._relation_rows(schema.class_name, obj["objectId"], field, ids, [])

    async def insert_batch(self, schema: ClassSchema, objects: list[StoredObject]) -> list[ParseError | None]:
        """One unordered insertMany; each refused document gets the error its own insert would get."""
        results: list[ParseError | None] = [None] * len(objects)
        docs: list[dict[str, Any]] = []
        positions: list[int] = []
        for index, obj in enumerate(objects):
            try:
                docs.append(self._encode(schema, obj))
                positions.append(index)
            except ParseError as exc:
                results[index] = exc
        if not docs:
            return results
        try:
            await self._coll(schema.class_name).insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                index = positions[error["index"]]
                results[index] = (ParseError(errors.DUPLICATE_VALUE, _DUPLICATE) if error.get("code") == 11000
                                  else ParseError(errors.INTERNAL_SERVER_ERROR, str(error.get("errmsg"))))
        return results

    async def _relation_rows(self, class_name: str, owner_id: str, field: str, adds: list[str],
                             removes: list[str]) -> None:
        join = self._coll(join_collection(field, class_name))
        if adds:
            await join.bulk_write([
                UpdateOne({"relatedId": rid, "owningId": owner_id},
                          {"$set": {"relatedId": rid, "owningId": owner_id}}, upsert=True)
                for rid in dict.fromkeys(adds)
            ])
        if removes:
            await join.delete_many({"owningId": owner_id, "relatedId": {"$in": list(removes)}})

    async def _update_document(self, schema: ClassSchema, changes: dict[str, Any],
                               auth_keys: list[str]) -> dict[str, Any]:
        sets: dict[str, Any] = {}
        unsets: dict[str, str] = {}
        incs: dict[str, Any] = {}
        pushes: dict[str, Any] = {}
        add_to_sets: dict[str, Any] = {}
        pulls: dict[str, Any] = {}
        is_user = schema.class_name == "_User"
        for name, change in changes.items():
            if isinstance(change, RelationOp) or name == "objectId":
                continue
            if name in ("createdAt", "updatedAt"):
                key = "_created_at" if name == "createdAt" else "_updated_at"
                sets[key] = top_level({"type": "Date"}, change)
                continue
            if is_user and name == "authData":
                if isinstance(change, dict):  # the whole authData: providers it lacks are unlinked
                    for key in auth_keys:
                        if change.get(key[len("_auth_data_"):]) is None:
                            unsets[key] = ""
                    for provider, data in change.items():
                        if data is None:
                            unsets[f"_auth_data_{provider}"] = ""
                        else:
                            sets[f"_auth_data_{provider}"] = interior(data)
                elif change is None or isinstance(change, Delete):
                    unsets.update({k: "" for k in auth_keys})
                continue
            if is_user and name == "password":
                continue
            if is_user and name == "_session_token":
                if change is None or isinstance(change, Delete):
                    unsets[name] = ""
                else:
                    sets[name] = change
                continue
            if name in ("_rperm", "_wperm"):
                ftype: FieldType | None = {"type": "Array"}
            else:
                ftype = self._field_type(schema, name)
                if ftype is None and (change is None or isinstance(change, Delete)):
                    continue  # unsetting a field the class does not have: nothing to do
                if ftype is None:
                    raise ParseError(errors.INCORRECT_TYPE, f"field {name} is not in the schema of {schema.class_name}")
                if ftype["type"] in ("Relation", "ACL"):
                    continue
            key = self._key(schema, name, ftype)
            if change is None or isinstance(change, Delete):
                unsets[key] = ""
            elif isinstance(change, Increment):
                incs[key] = change.amount
            elif isinstance(change, AddUnique):
                add_to_sets[key] = {"$each": [interior(v) for v in change.objects]}
            elif isinstance(change, Remove):
                pulls[key] = [interior(v) for v in change.objects]
            elif isinstance(change, Add):
                pushes[key] = {"$each": [interior(v) for v in change.objects]}
            elif isinstance(change, Op):
                raise ParseError(errors.COMMAND_UNAVAILABLE, f"The {type(change).__name__} operator is not supported yet.")
            else:
                sets[key] = list(change) if name in ("_rperm", "_wperm") else top_level(ftype, change)
        if "_rperm" in changes or "_wperm" in changes:
            rperm, wperm = changes.get("_rperm"), changes.get("_wperm")
            if isinstance(rperm, list) or isinstance(wperm, list):
                sets["_acl"] = legacy_acl(rperm if isinstance(rperm, list) else None,
                                          wperm if isinstance(wperm, list) else None)
            else:
                unsets["_acl"] = ""
        update: dict[str, Any] = {}
        for op, part in (("$set", sets), ("$unset", unsets), ("$inc", incs), ("$push", pushes),
                         ("$addToSet", add_to_sets), ("$pullAll", pulls)):
            if part:
                update[op] = part
        return update

    async def update(self, schema: ClassSchema, where: Node, changes: dict[str, Any], *,
                     many: bool = False) -> list[StoredObject]:
        compiler = self._compiler(schema)
        flt = await compiler.compile(where)
        if flt == MATCH_NONE:
            return []
        coll = self._coll(schema.class_name)
        relation_ops = {n: c for n, c in changes.items() if isinstance(c, RelationOp)}
        auth_keys: list[str] = []
        if schema.class_name == "_User" and "authData" in changes:
            async for doc in coll.find(flt):
                auth_keys.extend(k for k in doc if k.startswith("_auth_data_") and k not in auth_keys)
        update = await self._update_document(schema, changes, auth_keys)
        if many:
            ids = [d["_id"] async for d in coll.find(flt, {"_id": 1})]
            targets = [{"$and": [{"_id": oid}, flt]} if flt else {"_id": oid} for oid in ids]
        else:
            targets = [flt]
        docs: list[dict[str, Any]] = []
        for target in targets:
            try:
                if update:
                    doc = await coll.find_one_and_update(target, update, return_document=ReturnDocument.AFTER,
                                                         **self._op_kwargs())
                else:
                    doc = await coll.find_one(target)
            except DuplicateKeyError:
                raise ParseError(errors.DUPLICATE_VALUE, _DUPLICATE) from None
            except OperationFailure as exc:
                raise _update_error(exc, update) from None
            if doc is not None:
                docs.append(doc)
        objects = [self._decode(schema, d) for d in docs]
        for obj in objects:
            for name, op in relation_ops.items():
                await self._relation_rows(schema.class_name, obj["objectId"], name,
                                          [p["objectId"] for p in op.adds], [p["objectId"] for p in op.removes])
        return objects

    async def delete(self, schema: ClassSchema, where: Node, *, many: bool = False) -> int:
        flt = await self._compiler(schema).compile(where)
        if flt == MATCH_NONE:
            return 0
        coll = self._coll(schema.class_name)
        if many:
            ids = [d["_id"] async for d in coll.find(flt, {"_id": 1})]
            if ids:
                await coll.delete_many({"_id": {"$in": ids}})
        else:
            doc = await coll.find_one_and_delete(flt, projection={"_id": 1}, **self._op_kwargs())
            ids = [doc["_id"]] if doc else []
        if ids:
            for field in schema.relation_fields():
                await self._coll(join_collection(field, schema.class_name)).delete_many(
                    {"owningId": {"$in": [str(i) for i in ids]}})
        return len(ids)

    # --- bulk paths (migration) ------------------------------------------------------------------------
    async def insert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> int:
        """One unordered insertMany; documents whose _id (or a unique field) exists are skipped."""
        if not objects:
            return 0
        docs = [self._encode(schema, obj) for obj in objects]
        try:
            result = await self._coll(schema.class_name).insert_many(docs, ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            other = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
            if other:
                raise ParseError(errors.INTERNAL_SERVER_ERROR, f"MongoDB insertMany failed: {other[0].get('errmsg')}"
                                 ) from None
            return int(exc.details.get("nInserted", 0))

    async def upsert_many(self, schema: ClassSchema, objects: list[StoredObject]) -> None:
        if not objects:
            return
        docs = [self._encode(schema, obj) for obj in objects]
        await self._coll(schema.class_name).bulk_write(
            [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs], ordered=False)

    async def remove_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        if not pairs:
            return
        await self._coll(join_collection(field, class_name)).bulk_write(
            [DeleteOne({"relatedId": related, "owningId": owning}) for owning, related in pairs], ordered=False)

    async def add_relation_rows(self, class_name: str, field: str, pairs: list[tuple[str, str]]) -> None:
        """Bulk relation rows (migration): with a unique (owningId, relatedId) index on the join collection
        they are plain unordered inserts, duplicates skipped; without one, upserts (each a lookup)."""
        if not pairs:
            return
        coll = self._coll(join_collection(field, class_name))
        unique = dict.fromkeys(pairs)
        if await self._pair_index(coll):
            try:
                await coll.insert_many([{"owningId": o, "relatedId": r} for o, r in unique], ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise
            return
        await coll.bulk_write([
            UpdateOne({"relatedId": related, "owningId": owning},
                      {"$set": {"relatedId": related, "owningId": owning}}, upsert=True)
            for owning, related in unique
        ], ordered=False)

    async def _pair_index(self, coll: Any) -> bool:
        """Ensure (once per collection) a unique index on the relation pair; False if it cannot be made
        (e.g. old duplicate rows), in which case callers upsert."""
        known = self._pair_indexes.get(coll.name)
        if known is None:
            try:
                await coll.create_index([("owningId", 1), ("relatedId", 1)], unique=True, name="_parsectl_pair")
                known = True
            except PyMongoError as exc:
                log.warning("no unique pair index on %s (%s); relation rows are upserted", coll.name, exc)
                known = False
            self._pair_indexes[coll.name] = known
        return known

    async def relation_rows(self, class_name: str, field: str, *, after: tuple[str, str] | None = None,
                            limit: int = 5000) -> list[tuple[str, str]]:
        flt: dict[str, Any] = {}
        if after is not None:
            flt = {"$or": [{"owningId": {"$gt": after[0]}}, {"owningId": after[0], "relatedId": {"$gt": after[1]}}]}
        cursor = self._coll(join_collection(field, class_name)).find(
            flt, {"_id": 0, "owningId": 1, "relatedId": 1}, sort=[("owningId", 1), ("relatedId", 1)], limit=int(limit))
        return [(d["owningId"], d["relatedId"]) async for d in cursor]

    async def analyze(self, tables: list[str] | None = None) -> None:
        """MongoDB keeps no planner statistics to refresh."""


def _update_error(exc: OperationFailure, update: dict[str, Any]) -> ParseError:
    message = str(exc.details.get("errmsg") if exc.details else exc)
    if "$inc" in update and ("non-numeric" in message or "$inc" in message):
        return ParseError(errors.INVALID_JSON, "Cannot increment a non-number value")
    if exc.code in (2, 14) and any(op in update for op in ("$push", "$addToSet", "$pullAll")):
        return ParseError(errors.INCORRECT_TYPE, "Cannot apply an array operation to a non-array value")
    return ParseError(errors.INTERNAL_SERVER_ERROR, f"MongoDB update failed: {message}")



__all__ = ["MongoAdapter", "from_mongo_schema", "legacy_acl", "to_mongo_schema"]
