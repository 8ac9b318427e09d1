"""``/schemas``: read, create, change and drop class schemas (master key only), as parse-server 9.10."""

from __future__ import annotations

from typing import Any

from parsectl.model import errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError
from parsectl.model.schema import (
    BASE_FIELDS,
    DEFAULT_FIELDS,
    ClassSchema,
    check_class_name,
    class_name_is_valid,
    default_clp,
    field_name_is_valid,
    invalid_class_name_message,
)
from parsectl.server.schema_indexes import is_mongo, plan_indexes
from parsectl.server.schemas import SchemaController
from parsectl.storage.base import StorageAdapter

CLP_KEYS = ("find", "count", "get", "create", "update", "delete", "addField", "readUserFields",
            "writeUserFields", "protectedFields")
_SIMPLE_TYPES = ("Number", "String", "Boolean", "Date", "Object", "Array", "GeoPoint", "File", "Bytes", "Polygon")


def schema_json(schema: ClassSchema) -> dict[str, Any]:
    """The wire form; a class with default permissions shows them as parse-server 9.10 does."""
    out = schema.to_json()
    if schema.clp == default_clp():
        out["classLevelPermissions"] = {"ACL": {"*": {"read": True, "write": True}}, **default_clp()}
    return out


def check_field_type(field_type: Any) -> FieldType:
    if not isinstance(field_type, dict) or not isinstance(field_type.get("type"), str):
        raise ParseError(errors.INVALID_JSON, "invalid JSON")
    kind = field_type["type"]
    if kind in ("Pointer", "Relation"):
        target = field_type.get("targetClass")
        if not target:
            raise ParseError(135, f"type {kind} needs a class name")
        if not isinstance(target, str):
            raise ParseError(errors.INVALID_JSON, "invalid JSON")
        if not class_name_is_valid(target):
            raise ParseError(errors.INVALID_CLASS_NAME, invalid_class_name_message(target))
        return {"type": kind, "targetClass": target}
    if kind not in _SIMPLE_TYPES:
        raise ParseError(errors.INCORRECT_TYPE, f"invalid field type: {kind}")
    return {"type": kind}


def check_clp(clp: Any, fields: dict[str, FieldType]) -> dict[str, Any]:
    if not isinstance(clp, dict):
        raise ParseError(errors.INVALID_JSON, f"'{clp}' is not a valid value for class level permissions")
    for key, value in clp.items():
        if key not in CLP_KEYS:
            raise ParseError(errors.INVALID_JSON, f"{key} is not a valid operation for class level permissions")
        if key in ("readUserFields", "writeUserFields"):
            if not isinstance(value, list):
                raise ParseError(errors.INVALID_JSON, f"'{value}' is not a valid value for class level "
                                                      f"permissions {key} - must be an array")
            for name in value:
                ftype = fields.get(name)
                if not ftype or not (ftype["type"] == "Array" or (ftype["type"] == "Pointer"
                                                                   and ftype.get("targetClass") == "_User")):
                    raise ParseError(errors.INVALID_JSON, f"'{name}' is not a valid column for class level "
                                                          f"pointer permissions {key}")
        elif not isinstance(value, dict):
            raise ParseError(errors.INVALID_JSON, f"'{value}' is not a valid value for class level "
                                                  f"permissions {key} - must be an object")
    return clp


def _check_new_fields(class_name: str, submitted: dict[str, Any], existing: dict[str, FieldType]) -> None:
    for name, ftype in submitted.items():
        if name in existing or (isinstance(ftype, dict) and ftype.get("__op") == "Delete"):
            continue
        if not field_name_is_valid(name):
            raise ParseError(errors.INVALID_KEY_NAME, f"invalid field name: {name}")
        if name in BASE_FIELDS or name in DEFAULT_FIELDS.get(class_name, {}):
            raise ParseError(136, f"field {name} cannot be added")


def _check_geopoints(fields: dict[str, FieldType]) -> None:
    geo = [n for n, t in fields.items() if t["type"] == "GeoPoint"]
    if len(geo) > 1:
        raise ParseError(errors.INCORRECT_TYPE, "currently, only one GeoPoint field may exist in an object. "
                                                f"Adding {geo[1]} when {geo[0]} already exists.")


class SchemasAPI:
    def __init__(self, schemas: SchemaController, storage: StorageAdapter) -> None:
        self.schemas = schemas
        self.storage = storage

    async def all(self) -> dict[str, Any]:
        await self.schemas.load()
        return {"results": [schema_json(s) for s in self.schemas.all()]}

    async def one(self, class_name: str) -> dict[str, Any]:
        await self.schemas.load()
        schema = self.schemas.cached(class_name)
        if schema is None:
            raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
        return schema_json(schema)

    async def create(self, path_class: str | None, body: Any) -> dict[str, Any]:
        body = body if isinstance(body, dict) else {}
        body_class = body.get("className")
        if path_class and body_class and path_class != body_class:
            raise ParseError(errors.INVALID_CLASS_NAME, f"Class name mismatch between {body_class} and {path_class}.")
        class_name = path_class or body_class
        if not class_name:
            raise ParseError(135, f"POST /schemas{'/' + path_class if path_class else ''} needs a class name.")
        await self.schemas.load()
        if self.schemas.cached(class_name) is not None:
            raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} already exists.")
        check_class_name(class_name)
        submitted = body.get("fields") or {}
        if not isinstance(submitted, dict):
            raise ParseError(errors.INVALID_JSON, "invalid JSON")
        _check_new_fields(class_name, submitted, {})
        fields = {name: check_field_type(t) for name, t in submitted.items()}
        schema = ClassSchema.new(class_name, fields)
        _check_geopoints(schema.fields)
        if "classLevelPermissions" in body and body["classLevelPermissions"] is not None:
            schema.clp = check_clp(body["classLevelPermissions"], schema.fields)
        submitted = body.get("indexes")
        plan = None
        if submitted is not None and submitted != {}:
            # A new class's index keys are its fields without the ACL (node checks the adapter's schema).
            fields = {n: t for n, t in schema.fields.items() if n != "ACL"}
            plan = plan_indexes(submitted, {}, fields, mongo=is_mongo(self.storage))
        stored = await self.storage.ensure_class(schema)
        if stored.clp != schema.clp:
            stored = await self.storage.set_class_level_permissions(class_name, schema.clp)
        out = None
        if plan is not None:
            # node stores the map with "_id_" on PostgreSQL, only the submitted ones on MongoDB, and
            # answers the submitted ones on both.
            kept = dict(submitted) if is_mongo(self.storage) else plan.indexes
            stored = await self.storage.set_indexes(class_name, kept, plan.create, plan.drop)
            out = schema_json(stored)
            out["indexes"] = dict(submitted)
        await self.schemas.load()
        return out or schema_json(stored)

    async def update(self, class_name: str, body: Any) -> dict[str, Any]:
        body = body if isinstance(body, dict) else {}
        if body.get("className") and body["className"] != class_name:
            raise ParseError(errors.INVALID_CLASS_NAME,
                             f"Class name mismatch between {body['className']} and {class_name}.")
        await self.schemas.load()
        schema = self.schemas.cached(class_name)
        if schema is None:
            raise ParseError(errors.INVALID_CLASS_NAME, f"Class {class_name} does not exist.")
        submitted = body.get("fields") or {}
        if not isinstance(submitted, dict):
            raise ParseError(errors.INVALID_JSON, "invalid JSON")
        deletes, adds = [], {}
        for name, ftype in submitted.items():
            is_delete = isinstance(ftype, dict) and ftype.get("__op") == "Delete"
            if name in schema.fields and not is_delete and (
                    not isinstance(ftype, dict) or schema.fields[name]["type"] != ftype.get("type")):
                raise ParseError(255, f"Field {name} exists, cannot update.")
            if name not in schema.fields and is_delete:
                raise ParseError(255, f"Field {name} does not exist, cannot delete.")
            if is_delete:
                if name in BASE_FIELDS or name in DEFAULT_FIELDS.get(class_name, {}):
                    raise ParseError(136, f"field {name} cannot be changed")
                deletes.append(name)
            elif name not in schema.fields:
                adds[name] = ftype
        _check_new_fields(class_name, adds, schema.fields)
        new_fields = {name: check_field_type(t) for name, t in adds.items()}
        merged = {n: t for n, t in schema.fields.items() if n not in deletes} | new_fields
        _check_geopoints(merged)
        clp = body.get("classLevelPermissions")
        if clp is not None:
            check_clp(clp, merged)
        plan = None
        if body.get("indexes") is not None:
            plan = plan_indexes(body["indexes"], schema.indexes, merged, mongo=is_mongo(self.storage))
        if deletes:
            schema = await self.storage.delete_fields(class_name, deletes)
        if new_fields:
            schema = await self.storage.add_fields(class_name, new_fields)
        if clp is not None:
            schema = await self.storage.set_class_level_permissions(class_name, clp)
        if plan is not None:
            schema = await self.storage.set_indexes(class_name, plan.indexes, plan.create, plan.drop)
        await self.schemas.load()
        return schema_json(schema)

    async def delete(self, class_name: str) -> dict[str, Any]:
        check_class_name(class_name)
        await self.schemas.load()
        schema = self.schemas.cached(class_name)
        if schema is None:
            return {}
        count = await self.storage.count(schema, _ALL)
        if count:
            raise ParseError(255, f"Class {class_name} is not empty, contains {count} objects, cannot drop schema.")
        await self.storage.delete_class(schema)
        await self.schemas.load()
        return {}


def _all_node() -> Any:
    from parsectl.model.query import MatchAll

    return MatchAll()


_ALL = _all_node()
