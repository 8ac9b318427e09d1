"""The ``indexes`` of ``POST``/``PUT /schemas/:className``, checked as parse-server 9.10's storage adapters
check them (``setIndexesWithSchemaFormat``).

``indexes`` maps an index name to its keys (``{"name": {"field": 1}}``) or to ``{"__op": "Delete"}``.
The stored map starts as ``{"_id_": {"_id": 1}}`` when a class has none yet. Errors are 102:
``Index n exists, cannot update.``, ``Index n does not exist, cannot delete.``,
``Field f does not exist, cannot add index.``. On MongoDB a key may name a pointer's stored key
(``_p_author``). Where node answers 500 (a malformed index, a key with no column on PostgreSQL, dropping
``_id_``) parsectl answers 102 with a message saying why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from parsectl.model import errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError

ID_INDEX = "_id_"
_UNINDEXABLE_IN_SQL = ("Relation", "ACL")  # no column of their own on PostgreSQL and SQLite


@dataclass
class IndexPlan:
    indexes: dict[str, Any]  # the class's index map once applied
    create: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)


def is_mongo(storage: Any) -> bool:
    return type(storage).__module__.endswith(".mongo")


def plan_indexes(submitted: Any, existing: dict[str, Any], fields: dict[str, FieldType], *, mongo: bool) -> IndexPlan:
    """Check submitted index changes against the class's indexes and fields; raise 102 on the first error."""
    if not isinstance(submitted, dict):
        raise ParseError(errors.INVALID_QUERY, "indexes must be an object of index names.")
    indexes = dict(existing) if existing else {ID_INDEX: {"_id": 1}}
    plan = IndexPlan(indexes)
    for name, spec in submitted.items():
        delete = isinstance(spec, dict) and spec.get("__op") == "Delete"
        if name in indexes and not delete:
            raise ParseError(errors.INVALID_QUERY, f"Index {name} exists, cannot update.")
        if name not in indexes and delete:
            raise ParseError(errors.INVALID_QUERY, f"Index {name} does not exist, cannot delete.")
        if delete:
            if name == ID_INDEX:
                raise ParseError(errors.INVALID_QUERY, f"Index {ID_INDEX} cannot be deleted.")
            plan.drop.append(name)
            del indexes[name]
            continue
        if not isinstance(spec, dict) or not spec:
            raise ParseError(errors.INVALID_QUERY, f"Index {name} must be an object of field names.")
        for key in spec:
            base = key[3:] if mongo and key.startswith("_p_") else key
            if base not in fields:
                raise ParseError(errors.INVALID_QUERY, f"Field {key} does not exist, cannot add index.")
            if not mongo and fields[base]["type"] in _UNINDEXABLE_IN_SQL:
                raise ParseError(errors.INVALID_QUERY, f"Field {key} has no column to index.")
        indexes[name] = spec
        plan.create.append((name, spec))
    return plan
