"""``GET /aggregate/:className``: MongoDB-style aggregation pipelines and ``distinct``, master key only.

How it runs, on every storage adapter alike: the ``$match`` stages at the head of the pipeline are
translated to a Parse ``where`` (REST field names, ISO strings for Date fields, object ids or Pointers
for Pointer fields, as parse-server's MongoDB adapter accepts them), parsed with
:func:`parsectl.model.query.parse_where` and run *in the database* through the adapter's ``find``
(``$skip``/``$limit`` right after them go to the database too). **The rest of the reduction runs in
Python** over the fetched objects: ``$group`` (``_id`` as a field path, an object or an expression;
``$sum``, ``$avg``, ``$min``, ``$max``, ``$first``, ``$last``, ``$push``, ``$addToSet``, ``$count``),
``$project``, ``$sort``, ``$limit``, ``$skip``, ``$unwind``, ``$count`` and later ``$match`` stages,
with MongoDB's semantics (BSON type order for comparisons, missing fields skipped by accumulators).
Memory use is thus proportional to what the leading ``$match`` selects.

Output follows parse-server: ``_id`` becomes ``objectId`` (an empty one becomes null, a group key that
is a Pointer field becomes its object id), ``createdAt``/``updatedAt`` are ISO strings, other dates
``{"__type": "Date"}``, keys that are not valid field names are dropped and the class's Relation
fields are added to every result. Unlike parse-server on MongoDB, Pointer values inside accumulators
stay Pointer objects (not ``Class$id`` strings). ``$out``, ``$merge``, ``$where``, ``$function``,
``$accumulator`` and stages not listed here are refused with 102.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.schema import ClassSchema
from parsectl.server.auth import MASTER
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.server.rest import RestService
    from parsectl.server.routes import Request

_STAGES = ("$match", "$group", "$project", "$sort", "$limit", "$skip", "$unwind", "$count")
_FORBIDDEN = frozenset(("$out", "$merge", "$where", "$function", "$accumulator"))
_VALID_KEY = re.compile(r"^[A-Za-z][0-9A-Za-z_]*$")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _bad(message: str) -> ParseError:
    return ParseError(errors.INVALID_QUERY, message)


# --- the pipeline parameter -------------------------------------------------------------------------------


def parse_pipeline(params: dict[str, Any]) -> list[tuple[str, Any]]:
    """The pipeline's stages as (name, argument), validated as parse-server's AggregateRouter does."""
    raw = params.get("pipeline") or params
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _bad("Invalid parameter for query: pipeline") from None
    if isinstance(raw, dict):
        raw = [{k: v} for k, v in raw.items() if v is not None]
    if not isinstance(raw, list):
        raise _bad("Invalid parameter for query: pipeline")
    stages: list[tuple[str, Any]] = []
    for stage in raw:
        if not isinstance(stage, dict) or len(stage) != 1:
            keys = ", ".join(stage) if isinstance(stage, dict) else ""
            raise _bad(f"Pipeline stages should only have one key but found {keys}.")
        (name, arg), = stage.items()
        if name in ("distinct", "where"):
            continue
        if not name.startswith("$"):
            raise _bad(f"Invalid aggregate stage '{name}'.")
        if name == "$group":
            if not isinstance(arg, dict):
                raise _bad("Invalid parameter for query: group. Missing key _id")
            if "objectId" in arg:
                raise _bad("Cannot use 'objectId' in aggregation stage $group.")
            if "_id" not in arg:
                raise _bad("Invalid parameter for query: group. Missing key _id")
        if name in _FORBIDDEN:
            raise _bad(f"The aggregate stage {name} is not allowed.")
        if name not in _STAGES:
            raise _bad(f"The aggregate stage {name} is not supported by parsectl.")
        _check_forbidden(arg)
        stages.append((name, arg))
    return stages


def _check_forbidden(value: Any, depth: int = 0) -> None:
    if depth > 50:
        raise _bad("Aggregate pipeline is nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _FORBIDDEN:
                raise _bad(f"The {key} operator is not allowed in an aggregate pipeline.")
            _check_forbidden(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_forbidden(item, depth + 1)


# --- values: wire form <-> documents -----------------------------------------------------------------


def _rest_name(name: str) -> str:
    """A top-level name as parse-server's MongoDB adapter maps it (``_id`` is the objectId)."""
    if name == "objectId":
        return "_id"
    if name == "_created_at":
        return "createdAt"
    if name == "_updated_at":
        return "updatedAt"
    if name.startswith("_p_"):
        return name[3:]
    return name


def _path(name: str) -> list[str]:
    parts = name.split(".")
    parts[0] = _rest_name(parts[0])
    return parts


def _to_doc_value(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("__type") == "Date" and isinstance(value.get("iso"), str):
            try:
                return codec.parse_iso(value["iso"])
            except (ParseError, ValueError):
                return value
        return {k: _to_doc_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_doc_value(v) for v in value]
    return value


def _to_wire(value: Any) -> Any:
    if isinstance(value, datetime):
        return codec.date(codec.format_iso(value))
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items() if v is not MISSING}
    if isinstance(value, list):
        return [None if v is MISSING else _to_wire(v) for v in value]
    return None if value is MISSING else value


def _as_date(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return codec.parse_iso(value)
        except (ParseError, ValueError):
            return value
    if isinstance(value, dict) and value.get("__type") == "Date":
        return _to_doc_value(value)
    return value


# --- comparison in BSON order --------------------------------------------------------------------------


def _rank(v: Any) -> int:
    if v is None or v is MISSING:
        return 1
    if isinstance(v, bool):
        return 8
    if isinstance(v, int | float):
        return 2
    if isinstance(v, str) or codec.is_pointer(v):
        return 3
    if isinstance(v, dict):
        return 4
    if isinstance(v, list):
        return 5
    if isinstance(v, datetime):
        return 9
    return 10


def _scalar(v: Any) -> Any:
    return f"{v['className']}${v['objectId']}" if codec.is_pointer(v) else v


def compare(a: Any, b: Any) -> int:
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 1:
        return 0
    if ra == 4:
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=False):
            c = compare(ka, kb) or compare(va, vb)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    if ra == 5:
        for x, y in zip(a, b, strict=False):
            c = compare(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    a, b = _scalar(a), _scalar(b)
    try:
        return (a > b) - (a < b)
    except TypeError:
        return 0


def _canon(v: Any) -> Any:
    """A hashable key under which MongoDB groups equal values (1 and 1.0 together)."""
    if v is None or v is MISSING:
        return ("z",)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, int | float):
        return ("n", float(v))
    if isinstance(v, datetime):
        return ("d", v.timestamp())
    if isinstance(v, dict):
        return ("o", tuple((k, _canon(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("a", tuple(_canon(x) for x in v))
    return ("s", str(v))


# --- field paths and expressions ----------------------------------------------------------------------------


def get_path(doc: Any, parts: list[str]) -> Any:
    value = doc
    for i, part in enumerate(parts):
        if isinstance(value, list):
            found = [get_path(item, parts[i:]) for item in value if isinstance(item, dict)]
            return [f for f in found if f is not MISSING]
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _set_path(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        nxt = doc.get(part)
        if not isinstance(nxt, dict):
            nxt = doc[part] = {}
        doc = nxt
    doc[parts[-1]] = value


def _del_path(doc: dict[str, Any], parts: list[str]) -> None:
    for part in parts[:-1]:
        doc = doc.get(part)  # type: ignore[assignment]
        if not isinstance(doc, dict):
            return
    doc.pop(parts[-1], None)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _arith(op: str, args: list[Any]) -> Any:
    if any(a is None or a is MISSING for a in args):
        return None
    if op == "$add":
        dates = [a for a in args if isinstance(a, datetime)]
        total = sum(a for a in args if _num(a))
        if dates:
            return dates[0] + timedelta(milliseconds=total)
        return total
    if op == "$multiply":
        return math.prod(args)
    a, b = args
    if op == "$subtract":
        if isinstance(a, datetime) and isinstance(b, datetime):
            return int((a - b).total_seconds() * 1000)
        if isinstance(a, datetime):
            return a - timedelta(milliseconds=b)
        return a - b
    if op == "$divide":
        if b == 0:
            raise _bad("can't $divide by zero")
        return a / b
    if b == 0:
        raise _bad("can't $mod by zero")
    return math.fmod(a, b)


_DATE_PARTS = {
    "$year": lambda d: d.year, "$month": lambda d: d.month, "$dayOfMonth": lambda d: d.day,
    "$hour": lambda d: d.hour, "$minute": lambda d: d.minute, "$second": lambda d: d.second,
    "$millisecond": lambda d: d.microsecond // 1000, "$dayOfYear": lambda d: d.timetuple().tm_yday,
    "$dayOfWeek": lambda d: d.isoweekday() % 7 + 1, "$isoWeek": lambda d: d.isocalendar()[1],
    "$isoDayOfWeek": lambda d: d.isoweekday(), "$isoWeekYear": lambda d: d.isocalendar()[0],
}
_COMPARE_OPS = {"$eq": lambda c: c == 0, "$ne": lambda c: c != 0, "$gt": lambda c: c > 0,
                "$gte": lambda c: c >= 0, "$lt": lambda c: c < 0, "$lte": lambda c: c <= 0}


def _truthy(v: Any) -> bool:
    return not (v is None or v is MISSING or v is False or (_num(v) and v == 0))


def evaluate(expr: Any, doc: dict[str, Any]) -> Any:
    """A MongoDB aggregation expression (the common subset) against one document."""
    if isinstance(expr, str):
        if expr in ("$$ROOT", "$$CURRENT"):
            return doc
        if expr.startswith("$$"):
            raise _bad(f"Unsupported aggregate variable {expr}")
        if expr.startswith("$"):
            return get_path(doc, _path(expr[1:]))
        return expr
    if isinstance(expr, list):
        return [None if (v := evaluate(e, doc)) is MISSING else v for e in expr]
    if not isinstance(expr, dict):
        return expr
    if len(expr) == 1 and next(iter(expr)).startswith("$"):
        (op, arg), = expr.items()
        return _operator(op, arg, doc)
    out = {}
    for key, sub in expr.items():
        value = evaluate(sub, doc)
        if value is not MISSING:
            out[key] = value
    return out


def _args(arg: Any, doc: dict[str, Any]) -> list[Any]:
    return [evaluate(a, doc) for a in (arg if isinstance(arg, list) else [arg])]


def _operator(op: str, arg: Any, doc: dict[str, Any]) -> Any:
    if op == "$literal":
        return _to_doc_value(arg)
    if op in ("$add", "$multiply", "$subtract", "$divide", "$mod"):
        return _arith(op, _args(arg, doc))
    if op in ("$abs", "$ceil", "$floor", "$sqrt"):
        (v,) = _args(arg, doc)
        if not _num(v):
            return None
        return {"$abs": abs, "$ceil": math.ceil, "$floor": math.floor, "$sqrt": math.sqrt}[op](v)
    if op == "$round":
        values = _args(arg, doc)
        return None if not _num(values[0]) else round(values[0], int(values[1]) if len(values) > 1 else 0)
    if op in _DATE_PARTS:
        spec = arg.get("date") if isinstance(arg, dict) and "date" in arg else arg
        value = evaluate(spec, doc)
        if not isinstance(value, datetime):
            return None
        return _DATE_PARTS[op](value.astimezone(UTC))
    if op == "$concat":
        values = _args(arg, doc)
        return None if any(not isinstance(v, str) for v in values) else "".join(values)
    if op in ("$toLower", "$toUpper"):
        (v,) = _args(arg, doc)
        text = "" if v is None or v is MISSING else str(v)
        return text.lower() if op == "$toLower" else text.upper()
    if op == "$size":
        (v,) = _args(arg, doc)
        if not isinstance(v, list):
            raise _bad("The argument to $size must be an array")
        return len(v)
    if op == "$ifNull":
        values = _args(arg, doc)
        for v in values[:-1]:
            if v is not None and v is not MISSING:
                return v
        return values[-1]
    if op == "$cond":
        parts = [arg.get("if"), arg.get("then"), arg.get("else")] if isinstance(arg, dict) else list(arg)
        return evaluate(parts[1] if _truthy(evaluate(parts[0], doc)) else parts[2], doc)
    if op in _COMPARE_OPS:
        a, b = _args(arg, doc)
        return _COMPARE_OPS[op](compare(None if a is MISSING else a, None if b is MISSING else b))
    if op == "$cmp":
        a, b = _args(arg, doc)
        return compare(a, b)
    if op == "$and":
        return all(_truthy(v) for v in _args(arg, doc))
    if op == "$or":
        return any(_truthy(v) for v in _args(arg, doc))
    if op == "$not":
        return not _truthy(_args(arg, doc)[0])
    if op == "$in":
        value, array = _args(arg, doc)
        return isinstance(array, list) and any(compare(value, v) == 0 for v in array)
    if op == "$arrayElemAt":
        array, index = _args(arg, doc)
        if not isinstance(array, list) or not isinstance(index, int):
            return None
        return array[index] if -len(array) <= index < len(array) else MISSING
    if op == "$toString":
        (v,) = _args(arg, doc)
        if isinstance(v, datetime):
            return codec.format_iso(v)
        return None if v is None or v is MISSING else str(v)
    raise _bad(f"Unsupported aggregate expression operator {op}")


# --- $match in Python -----------------------------------------------------------------------------------


def _cmp_values(actual: Any, expected: Any) -> int | None:
    """-1/0/1 comparing two values of the same BSON type class, else None (MongoDB type bracketing)."""
    if isinstance(actual, datetime):
        expected = _as_date(expected)
    if codec.is_pointer(actual) and isinstance(expected, str) and "$" not in expected:
        actual = actual["objectId"]
    if isinstance(expected, dict) and codec.is_pointer(expected) and isinstance(actual, str) and "$" not in actual:
        expected = expected["objectId"]
    if _rank(actual) != _rank(expected):
        return None
    return compare(actual, expected)


def _equals(actual: Any, expected: Any) -> bool:
    if actual is MISSING:
        return expected is None
    if _cmp_values(actual, expected) == 0:
        return True
    return isinstance(actual, list) and any(_equals(item, expected) for item in actual)


def _op_holds(actual: Any, op: str, arg: Any, cond: dict[str, Any]) -> bool:
    if op == "$eq":
        return _equals(actual, arg)
    if op == "$ne":
        return not _equals(actual, arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        candidates = actual if isinstance(actual, list) else [actual]
        test = _COMPARE_OPS[op]
        return any((c := _cmp_values(v, arg)) is not None and test(c) for v in candidates if v is not MISSING)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise _bad(f"bad {op} value")
        found = any(_equals(actual, v) for v in arg)
        return found if op == "$in" else not found
    if op == "$exists":
        return (actual is not MISSING) == bool(arg)
    if op == "$regex":
        compiled = query.compile_regex(arg, cond.get("$options") or "") if isinstance(arg, str) else None
        if compiled is None:
            raise _bad(f"Invalid regular expression: {arg}")
        values = actual if isinstance(actual, list) else [actual]
        return any(isinstance(v, str) and compiled.search(v) for v in values)
    if op == "$options":
        return True
    if op == "$all":
        return isinstance(arg, list) and isinstance(actual, list) and all(_equals(actual, v) for v in arg)
    if op == "$size":
        return isinstance(actual, list) and len(actual) == arg
    if op == "$not":
        return not _field_matches(actual, arg)
    raise _bad(f"Unsupported $match operator {op}")


def _field_matches(actual: Any, cond: Any) -> bool:
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        return all(_op_holds(actual, op, arg, cond) for op, arg in cond.items())
    return _equals(actual, _to_doc_value(cond))


def matches(doc: dict[str, Any], cond: Any) -> bool:
    if not isinstance(cond, dict):
        raise _bad("the match filter must be an expression in an object")
    for key, sub in cond.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(sub, list) or not sub:
                raise _bad(f"{key} must be a nonempty array")
            results = [matches(doc, c) for c in sub]
            if (key == "$and" and not all(results)) or (key == "$or" and not any(results)) or (
                    key == "$nor" and any(results)):
                return False
        elif key == "$expr":
            if not _truthy(evaluate(sub, doc)):
                return False
        elif key.startswith("$"):
            raise _bad(f"Unsupported $match operator {key}")
        elif not _field_matches(get_path(doc, _path(key)), sub):
            return False
    return True


# --- leading $match -> Parse where ---------------------------------------------------------------------------


def _convert_match_value(ftype: dict[str, Any] | None, value: Any) -> Any:
    kind = ftype["type"] if ftype else None
    if isinstance(value, dict) and "__type" not in value and any(k.startswith("$") for k in value):
        return {op: (_convert_match_value(ftype, v) if op not in ("$exists", "$regex", "$options") else v)
                for op, v in value.items()}
    if isinstance(value, list) and kind != "Array":
        return [_convert_match_value(ftype, v) for v in value]
    if kind == "Date" and isinstance(value, str):
        iso = codec.date_iso(value)
        return codec.date(iso) if iso else value
    if kind == "Pointer" and isinstance(value, str):
        if "$" in value:
            class_name, _, object_id = value.partition("$")
            return codec.pointer(class_name, object_id)
        return codec.pointer(ftype["targetClass"], value)  # type: ignore[index]
    return value


def match_to_where(schema: ClassSchema, match: Any) -> dict[str, Any]:
    if not isinstance(match, dict):
        raise _bad("the match filter must be an expression in an object")
    out: dict[str, Any] = {}
    for key, value in match.items():
        if key in ("$or", "$and", "$nor"):
            out[key] = [match_to_where(schema, c) for c in value] if isinstance(value, list) else value
            continue
        parts = key.split(".")
        name = _rest_name(parts[0])
        name = "objectId" if name == "_id" else name
        ftype = schema.fields.get(name) if len(parts) == 1 else None
        out[".".join([name, *parts[1:]])] = _convert_match_value(ftype, value)
    return out


# --- stages ---------------------------------------------------------------------------------------------------


def _group(docs: list[dict[str, Any]], spec: dict[str, Any], schema: ClassSchema) -> list[dict[str, Any]]:
    id_spec = spec["_id"]
    pointer_key = False
    if isinstance(id_spec, str) and id_spec.startswith("$") and "." not in id_spec:
        ftype = schema.fields.get(_rest_name(id_spec[1:]))
        pointer_key = bool(ftype and ftype["type"] == "Pointer")
    accumulators: list[tuple[str, str, Any]] = []
    for name, acc in spec.items():
        if name == "_id":
            continue
        if not isinstance(acc, dict) or len(acc) != 1:
            raise _bad(f"The field '{name}' must be an accumulator object")
        (op, arg), = acc.items()
        if op not in ("$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet", "$count"):
            raise _bad(f"Unsupported $group accumulator {op}")
        accumulators.append((name, op, arg))
    groups: dict[Any, tuple[Any, list[dict[str, Any]]]] = {}
    for doc in docs:
        key = evaluate(id_spec, doc)
        if key is MISSING:
            key = None
        if pointer_key and codec.is_pointer(key):
            key = key["objectId"]
        groups.setdefault(_canon(key), (key, []))[1].append(doc)
    out = []
    for key, members in groups.values():
        row: dict[str, Any] = {"_id": key}
        for name, op, arg in accumulators:
            row[name] = _accumulate(op, arg, members)
        out.append(row)
    return out


def _accumulate(op: str, arg: Any, members: list[dict[str, Any]]) -> Any:
    if op == "$count":
        return len(members)
    values = [evaluate(arg, doc) for doc in members]
    if op == "$sum":
        numbers = [v for v in values if _num(v)]
        return sum(numbers) if numbers else 0
    if op == "$avg":
        numbers = [v for v in values if _num(v)]
        return sum(numbers) / len(numbers) if numbers else None
    if op in ("$min", "$max"):
        present = [v for v in values if v is not None and v is not MISSING]
        if not present:
            return None
        key = functools.cmp_to_key(compare)
        return min(present, key=key) if op == "$min" else max(present, key=key)
    if op == "$first":
        return None if values[0] is MISSING else values[0]
    if op == "$last":
        return None if values[-1] is MISSING else values[-1]
    present = [v for v in values if v is not MISSING]
    if op == "$push":
        return present
    seen: set[Any] = set()
    unique = []
    for v in present:
        if _canon(v) not in seen:
            seen.add(_canon(v))
            unique.append(v)
    return unique


def _project(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    if not isinstance(spec, dict) or not spec:
        raise _bad("$project requires at least one output field")
    spec = {".".join(_path(k)): v for k, v in spec.items()}
    fields = {k: v for k, v in spec.items() if k != "_id"}
    exclusion = bool(fields) and all(v is False or (_num(v) and v == 0) for v in fields.values())
    if not fields:
        exclusion = spec.get("_id") in (0, False)
    if not exclusion and any(v is False or (_num(v) and v == 0) for v in fields.values()):
        raise _bad("Invalid $project :: cannot mix inclusion and exclusion")
    out = []
    for doc in docs:
        if exclusion:
            new = copy.deepcopy(doc)
            for key in spec:
                _del_path(new, key.split("."))
        else:
            new = {}
            id_spec = spec.get("_id", True)
            if id_spec is True or (_num(id_spec) and id_spec == 1):
                if "_id" in doc:
                    new["_id"] = doc["_id"]
            elif not (id_spec is False or (_num(id_spec) and id_spec == 0)):
                new["_id"] = evaluate(id_spec, doc)
            for key, value in fields.items():
                parts = key.split(".")
                result = get_path(doc, parts) if value is True or _num(value) else evaluate(value, doc)
                if result is not MISSING:
                    _set_path(new, parts, result)
        out.append(new)
    return out


def _sort(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    if not isinstance(spec, dict) or not spec:
        raise _bad("$sort stage must have at least one sort key")
    keys = []
    for name, direction in spec.items():
        if direction not in (1, -1):
            raise _bad(f"$sort key ordering must be 1 (for ascending) or -1 (for descending): {name}")
        keys.append((_path(name), direction))

    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for parts, direction in keys:
            c = compare(get_path(a, parts), get_path(b, parts))
            if c:
                return c * direction
        return 0

    return sorted(docs, key=functools.cmp_to_key(cmp))


def _count_arg(value: Any, stage: str) -> int:
    if not _num(value) or value != int(value) or value < (1 if stage == "$limit" else 0):
        raise _bad(f"invalid argument to {stage} stage: {value}")
    return int(value)


def _unwind(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    opts = spec if isinstance(spec, dict) else {"path": spec}
    path = opts.get("path")
    if not isinstance(path, str) or not path.startswith("$"):
        raise _bad("$unwind requires a path beginning with '$'")
    parts = _path(path[1:])
    index_field = opts.get("includeArrayIndex")
    preserve = bool(opts.get("preserveNullAndEmptyArrays"))
    out = []
    for doc in docs:
        value = get_path(doc, parts)
        if isinstance(value, list) and value:
            for i, item in enumerate(value):
                new = copy.deepcopy(doc)
                _set_path(new, parts, item)
                if index_field:
                    new[index_field] = i
                out.append(new)
        elif isinstance(value, list) or value is None or value is MISSING:
            if preserve:
                new = copy.deepcopy(doc)
                if isinstance(value, list):
                    _del_path(new, parts)
                if index_field:
                    new[index_field] = None
                out.append(new)
        else:
            new = copy.deepcopy(doc)
            if index_field:
                new[index_field] = None
            out.append(new)
    return out


def _count(docs: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    if not isinstance(spec, str) or not spec or spec.startswith("$") or "." in spec:
        raise _bad("the count field must be a non-empty string, not start with '$' nor contain '.'")
    return [{spec: len(docs)}] if docs else []


def run_stages(docs: list[dict[str, Any]], stages: list[tuple[str, Any]], schema: ClassSchema
               ) -> list[dict[str, Any]]:
    for name, arg in stages:
        if name == "$match":
            docs = [d for d in docs if matches(d, arg)]
        elif name == "$group":
            docs = _group(docs, arg, schema)
        elif name == "$project":
            docs = _project(docs, arg)
        elif name == "$sort":
            docs = _sort(docs, arg)
        elif name == "$limit":
            docs = docs[:_count_arg(arg, name)]
        elif name == "$skip":
            docs = docs[_count_arg(arg, name):]
        elif name == "$unwind":
            docs = _unwind(docs, arg)
        elif name == "$count":
            docs = _count(docs, arg)
    return docs


def finish(schema: ClassSchema, doc: dict[str, Any]) -> dict[str, Any]:
    """One result as parse-server answers it."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if value is MISSING:
            continue
        if key == "_id":
            if value is None or (isinstance(value, dict | str) and not value):
                value = None
            key = "objectId"
        elif key == "__type" or not _VALID_KEY.match(key):
            continue
        if key in ("createdAt", "updatedAt") and isinstance(value, datetime):
            out[key] = codec.format_iso(value)
        else:
            out[key] = _to_wire(value)
    if "objectId" in out:
        out["objectId"] = out.pop("objectId")
    for name, target in schema.relation_fields().items():
        out[name] = codec.relation(target)
    return out


# --- the route ---------------------------------------------------------------------------------------------


class AggregateAPI:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    def _doc(self, schema: ClassSchema, row: dict[str, Any]) -> dict[str, Any]:
        wire = self.rest.to_wire(schema, row, MASTER)
        wire.pop("ACL", None)
        for name in schema.relation_fields():
            wire.pop(name, None)
        doc: dict[str, Any] = {"_id": wire.pop("objectId", None)}
        for key, value in wire.items():
            if key in ("createdAt", "updatedAt") and isinstance(value, str):
                doc[key] = codec.parse_iso(value)
            else:
                doc[key] = _to_doc_value(value)
        return doc

    async def _where(self, schema: ClassSchema, where: Any) -> query.Node:
        node = query.parse_where(where, master=True)
        return await self.rest._resolve(MASTER, schema, node)  # noqa: SLF001 - subqueries as a find runs them

    async def handle(self, request: Request, args: dict[str, str]) -> Response:
        from parsectl.server.routes import require_master

        require_master(request)
        params = {k: v for k, v in (request.params or {}).items()
                  if k not in ("hint", "explain", "comment", "readPreference")}
        distinct = params.get("distinct")
        stages = parse_pipeline(params)
        schema = await self.rest.schemas.get(args["className"])
        if schema is None:
            return Response.json({"results": []})
        if distinct:
            where = query.where_json(params.get("where"))
            return Response.json({"results": await self.distinct(schema, str(distinct), where)})
        return Response.json({"results": await self.aggregate(schema, stages)})

    async def distinct(self, schema: ClassSchema, field: str, where: Any) -> list[Any]:
        rows = await self.rest.storage.find(schema, await self._where(schema, where))
        parts = _path(field)
        seen: set[Any] = set()
        values: list[Any] = []
        for row in rows:
            value = get_path(self._doc(schema, row), parts)
            for item in value if isinstance(value, list) else [value]:
                if item is None or item is MISSING or _canon(item) in seen:
                    continue
                seen.add(_canon(item))
                values.append(item)
        values.sort(key=functools.cmp_to_key(compare))
        return [_to_wire(v) for v in values]

    async def aggregate(self, schema: ClassSchema, stages: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        head: list[query.Node] = []
        i = 0
        while i < len(stages) and stages[i][0] == "$match":
            head.append(await self._where(schema, match_to_where(schema, stages[i][1])))
            i += 1
        skip, limit = 0, None
        while i < len(stages) and stages[i][0] in ("$skip", "$limit"):
            n = _count_arg(stages[i][1], stages[i][0])
            if stages[i][0] == "$skip":
                skip += n
                limit = None if limit is None else max(0, limit - n)
            else:
                limit = n if limit is None else min(limit, n)
            i += 1
        where: query.Node = head[0] if len(head) == 1 else query.And(head) if head else query.MatchAll()
        rows = [] if limit == 0 else await self.rest.storage.find(schema, where, skip=skip, limit=limit)
        docs = run_stages([self._doc(schema, row) for row in rows], stages[i:], schema)
        return [finish(schema, d) for d in docs]
