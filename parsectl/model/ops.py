"""Update operations (``{"__op": ...}``) and the checks parse-server applies to write bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from parsectl.model import codec, errors
from parsectl.model.codec import FieldType
from parsectl.model.errors import ParseError


@dataclass
class Op:
    """Base class of update operations."""

    def field_type(self) -> FieldType | None:
        return None

    def initial_value(self) -> Any:
        """The value the field takes when the op runs on a new object (or a missing field)."""
        return None

    def apply(self, current: Any) -> Any:
        """The field's new value given its current value (used by stores that apply ops in code)."""
        raise NotImplementedError


@dataclass
class Delete(Op):
    def apply(self, current: Any) -> Any:
        return None


@dataclass
class Increment(Op):
    amount: int | float

    def field_type(self) -> FieldType:
        return {"type": "Number"}

    def initial_value(self) -> Any:
        return self.amount

    def apply(self, current: Any) -> Any:
        if current is None:
            return self.amount
        if not isinstance(current, int | float) or isinstance(current, bool):
            raise ParseError(errors.INVALID_JSON, "Cannot increment a non-number value")
        return current + self.amount


def _as_list(current: Any) -> list[Any]:
    if current is None:
        return []
    if isinstance(current, list):
        return list(current)
    raise ParseError(errors.INCORRECT_TYPE, "Cannot apply an array operation to a non-array value")


def _identity(value: Any) -> Any:
    """A hashable key equal for values JavaScript/MongoDB consider equal (true is not 1; pointers by id)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(_identity(v) for v in value))
    if isinstance(value, dict):
        if codec.is_pointer(value):
            return ("p", value["className"], value["objectId"])
        return ("o", tuple(sorted((k, _identity(v)) for k, v in value.items())))
    return ("z",)


def _same(a: Any, b: Any) -> bool:
    return _identity(a) == _identity(b)


@dataclass
class Add(Op):
    objects: list[Any]

    def field_type(self) -> FieldType:
        return {"type": "Array"}

    def initial_value(self) -> Any:
        return list(self.objects)

    def apply(self, current: Any) -> Any:
        return _as_list(current) + list(self.objects)


@dataclass
class AddUnique(Add):
    def initial_value(self) -> Any:
        return self.apply(None)

    def apply(self, current: Any) -> Any:
        result = _as_list(current)
        for item in self.objects:
            if not any(_same(item, existing) for existing in result):
                result.append(item)
        return result


@dataclass
class Remove(Add):
    def initial_value(self) -> Any:
        return []

    def apply(self, current: Any) -> Any:
        return [item for item in _as_list(current) if not any(_same(item, gone) for gone in self.objects)]


@dataclass
class RelationOp(Op):
    """AddRelation / RemoveRelation; ``adds`` and ``removes`` are lists of pointers."""

    target: str
    adds: list[dict[str, str]]
    removes: list[dict[str, str]]

    def field_type(self) -> FieldType:
        return {"type": "Relation", "targetClass": self.target}


def _objects(body: dict[str, Any], verb: str) -> list[Any]:
    objects = body.get("objects")
    if not isinstance(objects, list):
        raise ParseError(errors.INVALID_JSON, f"objects to {verb} must be an array")
    return [codec.normalize_value(o) for o in objects]


def _relation_op(kind: str, body: dict[str, Any]) -> RelationOp:
    objects = _objects(body, "add" if kind == "AddRelation" else "remove")
    pointers = []
    for obj in objects:
        if not codec.is_pointer(obj):
            raise ParseError(errors.INVALID_JSON, "Invalid relation object: expected a Pointer")
        pointers.append(obj)
    targets = {p["className"] for p in pointers}
    if len(targets) > 1:
        raise ParseError(errors.INVALID_JSON, "All objects in a relation must have the same class")
    target = next(iter(targets), "")
    if kind == "AddRelation":
        return RelationOp(target, pointers, [])
    return RelationOp(target, [], pointers)


def parse_op(body: dict[str, Any]) -> Op:
    """Parse one ``{"__op": ...}`` value."""
    kind = body.get("__op")
    if kind == "Delete":
        return Delete()
    if kind == "Increment":
        amount = body.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool):
            raise ParseError(errors.INVALID_JSON, "incrementing must provide a number")
        return Increment(amount)
    if kind == "Add":
        return Add(_objects(body, "add"))
    if kind == "AddUnique":
        return AddUnique(_objects(body, "add"))
    if kind == "Remove":
        return Remove(_objects(body, "remove"))
    if kind in ("AddRelation", "RemoveRelation"):
        return _relation_op(kind, body)
    if kind == "Batch":
        ops = body.get("ops")
        if not isinstance(ops, list) or not ops:
            raise ParseError(errors.INVALID_JSON, "Batch ops must be a non-empty array")
        merged: RelationOp | None = None
        for sub in ops:
            if not isinstance(sub, dict) or sub.get("__op") not in ("AddRelation", "RemoveRelation"):
                raise ParseError(errors.COMMAND_UNAVAILABLE, "The Batch operator only supports relation operations.")
            op = _relation_op(sub["__op"], sub)
            if merged is None:
                merged = op
            else:
                if op.target and merged.target and op.target != merged.target:
                    raise ParseError(errors.INVALID_JSON, "All objects in a relation must have the same class")
                merged.target = merged.target or op.target
                merged.adds += op.adds
                merged.removes += op.removes
        assert merged is not None
        return merged
    raise ParseError(errors.COMMAND_UNAVAILABLE, f"The {kind} operator is not supported yet.")


def parse_value(value: Any) -> Any:
    """A field value of a write body: an :class:`Op` or a normalised wire value."""
    if isinstance(value, dict) and "__op" in value:
        return parse_op(value)
    return codec.normalize_field(value)
