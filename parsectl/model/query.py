"""A parsed query: the ``where`` tree and find options, independent of any database.

:func:`parse_where` validates a REST ``where`` object and turns it into a small tree of nodes that
the storage adapters compile to their own query language. Subqueries (``$inQuery``, ``$select``)
stay in the tree as :class:`InQuery` / :class:`Select`; the server resolves them (running them with
the caller's permissions) into :class:`In` nodes before a storage adapter sees the query.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from parsectl.model import codec, errors
from parsectl.model.errors import ParseError
from parsectl.model.geo_text import (  # noqa: F401 - the geo/text nodes belong to the query tree
    GEO_OPERATORS,
    GeoIntersects,
    NearSphere,
    TextSearch,
    WithinBox,
    WithinPolygon,
    WithinSphere,
    parse_geo_text,
)

_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.]*$")
_OPTIONS = re.compile(r"^[imxs]*$")


QUOTED_PATTERN = re.compile(r"\\Q(.*?)(?:\\E|$)", re.DOTALL)


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str, options: str) -> Any:
    """A compiled ``$regex`` (PCRE-style, with the SDKs' ``\\Q...\\E`` quoting); None if invalid.

    It uses the ``regex`` engine, which avoids most catastrophic backtracking and takes a ``timeout``
    per match, so one hostile pattern cannot stall the server."""
    import regex

    flags = regex.VERSION0
    for letter in options:
        flags |= {"i": regex.IGNORECASE, "m": regex.MULTILINE, "x": regex.VERBOSE, "s": regex.DOTALL}.get(letter, 0)
    translated = QUOTED_PATTERN.sub(lambda m: regex.escape(m.group(1)), pattern)
    try:
        return regex.compile(translated, flags)
    except (regex.error, ValueError, TypeError):
        return None


class Node:
    """Base class of query tree nodes."""


@dataclass
class And(Node):
    children: list[Node]


@dataclass
class Or(Node):
    children: list[Node]


@dataclass
class Not(Node):
    child: Node


@dataclass
class Compare(Node):
    """``field <op> value`` with op one of eq, ne, lt, lte, gt, gte; value in wire form."""

    field: str
    op: str
    value: Any


@dataclass
class In(Node):
    field: str
    values: list[Any]
    negate: bool = False


@dataclass
class All(Node):
    field: str
    values: list[Any]


@dataclass
class ContainedBy(Node):
    field: str
    values: list[Any]


@dataclass
class Exists(Node):
    field: str
    exists: bool


@dataclass
class Regex(Node):
    field: str
    pattern: str
    options: str = ""


@dataclass
class RelatedTo(Node):
    """Objects in the relation ``key`` of ``owner`` (a Pointer)."""

    owner: dict[str, str]
    key: str


@dataclass
class InQuery(Node):
    field: str
    class_name: str
    where: Node
    negate: bool = False


@dataclass
class Select(Node):
    field: str
    class_name: str
    where: Node
    key: str
    negate: bool = False


@dataclass
class PermIn(Node):
    """The object's permission array (``_rperm``/``_wperm``) is unset or shares an entry with ``group``."""

    perm: str
    group: list[str]


@dataclass
class MatchAll(Node):
    pass


@dataclass
class MatchNone(Node):
    pass


TRUE = MatchAll()

_COMPARISONS = {"$lt": "lt", "$lte": "lte", "$gt": "gt", "$gte": "gte", "$ne": "ne", "$eq": "eq"}


def _bad_json(message: str) -> ParseError:
    return ParseError(errors.INVALID_JSON, message)


def _value(value: Any) -> Any:
    return codec.normalize_value(value)


def parse_where(where: Any, *, master: bool = False, depth: int = 0) -> Node:
    """Validate and parse a ``where`` object."""
    if depth > 20:
        raise ParseError(errors.INVALID_QUERY, "Query is nested too deeply")
    if where is None:
        return TRUE
    if not isinstance(where, dict):
        raise ParseError(errors.INVALID_JSON, "where parameter is not valid JSON")
    nodes: list[Node] = []
    for key, cond in where.items():
        if key in ("$or", "$and", "$nor"):
            if not isinstance(cond, list):
                raise ParseError(errors.INVALID_QUERY, f"Bad {key} format - use an array value.")
            if key == "$nor" and not cond:
                raise ParseError(errors.INVALID_QUERY, "Bad $nor format - use an array of at least 1 value.")
            children = [parse_where(c, master=master, depth=depth + 1) for c in cond]
            if key == "$or":
                nodes.append(Or(children) if children else MatchNone())
            elif key == "$and":
                nodes.append(And(children))
            else:
                nodes.append(Not(Or(children)))
            continue
        if key == "$relatedTo":
            nodes.append(_related_to(cond))
            continue
        if key == "ACL":
            raise ParseError(errors.INVALID_QUERY, "Cannot query on ACL.")
        if not master and not _KEY.match(key):
            raise ParseError(errors.INVALID_KEY_NAME, f"Invalid key name: {key}")
        if key.startswith("$"):
            raise ParseError(errors.INVALID_JSON, f"bad constraint: {key}")
        nodes.extend(_field_constraints(key, cond, master, depth))
    if len(nodes) == 1:
        return nodes[0]
    return And(nodes)


def _related_to(cond: Any) -> Node:
    if not isinstance(cond, dict) or not codec.is_pointer(cond.get("object")) or not isinstance(
        cond.get("key"), str
    ):
        raise ParseError(errors.INVALID_JSON, "improper usage of $relatedTo")
    obj = cond["object"]
    return RelatedTo(codec.pointer(obj["className"], obj["objectId"]), cond["key"])


def _is_constraint(cond: Any) -> bool:
    return isinstance(cond, dict) and "__type" not in cond and any(k.startswith("$") for k in cond)


def _field_constraints(key: str, cond: Any, master: bool, depth: int) -> list[Node]:
    if not _is_constraint(cond):
        return [Compare(key, "eq", _value(cond))]
    nodes: list[Node] = []
    plain: dict[str, Any] = {}
    geo = False
    options = cond.get("$options")
    if options is not None and (not isinstance(options, str) or not _OPTIONS.match(options)):
        raise ParseError(errors.INVALID_QUERY, f"Bad $options value for query: {options}")
    for op, arg in cond.items():
        if op in _COMPARISONS:
            nodes.append(Compare(key, _COMPARISONS[op], _comparison_value(op, arg)))
        elif op in ("$in", "$nin"):
            if not isinstance(arg, list):
                raise _bad_json(f"bad {op} value")
            nodes.append(In(key, [_value(v) for v in arg], negate=op == "$nin"))
        elif op == "$all":
            if not isinstance(arg, list):
                raise _bad_json("bad $all value")
            nodes.append(_all(key, arg))
        elif op == "$containedBy":
            if not isinstance(arg, list):
                raise _bad_json("bad $containedBy: should be an array")
            nodes.append(ContainedBy(key, [_value(v) for v in arg]))
        elif op == "$exists":
            if not isinstance(arg, bool):
                raise _bad_json("bad $exists value")
            nodes.append(Exists(key, arg))
        elif op == "$regex":
            if not isinstance(arg, str):
                raise _bad_json(f"bad regex: {arg}")
            if compile_regex(arg, options or "") is None:
                raise ParseError(errors.INVALID_QUERY, f"Invalid regular expression: {arg}")
            nodes.append(Regex(key, arg, options or ""))
        elif op == "$options":
            if "$regex" not in cond:
                raise _bad_json("bad $options: $regex is required")
        elif op in ("$inQuery", "$notInQuery"):
            nodes.append(_in_query(key, op, arg, master, depth))
        elif op in ("$select", "$dontSelect"):
            nodes.append(_select(key, op, arg, master, depth))
        elif op in GEO_OPERATORS:
            geo = True
        elif op.startswith("$"):
            raise _bad_json(f"bad constraint: {op}")
        else:
            plain[op] = arg
    if geo:
        nodes.extend(parse_geo_text(key, cond))
    if plain:
        # Plain keys mixed with operators form one equality, as parse-server's replaceEquality does.
        nodes.append(Compare(key, "eq", _value(plain)))
    return nodes


def _comparison_value(op: str, arg: Any) -> Any:
    if isinstance(arg, dict) and "$relativeTime" in arg:
        if op not in ("$lt", "$lte", "$gt", "$gte"):
            raise _bad_json("$relativeTime can only be used with the $lt, $lte, $gt, and $gte operators")
        return codec.date(relative_time(arg["$relativeTime"]))
    return _value(arg)


def _all(key: str, values: list[Any]) -> Node:
    regexes = [isinstance(v, dict) and "$regex" in v for v in values]
    if any(regexes):
        if not all(regexes):
            raise _bad_json("All $all values must be of regex type or none: " + str(values))
        nodes: list[Node] = []
        for v in values:
            nodes.extend(_field_constraints(key, v, False, 0))
        return And(nodes)
    return All(key, [_value(v) for v in values])


def _in_query(key: str, op: str, arg: Any, master: bool, depth: int) -> Node:
    if not isinstance(arg, dict) or not isinstance(arg.get("className"), str) or "where" not in arg:
        raise ParseError(errors.INVALID_QUERY, f"improper usage of {op}")
    sub = parse_where(arg["where"], master=master, depth=depth + 1)
    return InQuery(key, arg["className"], sub, negate=op == "$notInQuery")


def _select(key: str, op: str, arg: Any, master: bool, depth: int) -> Node:
    if (
        not isinstance(arg, dict)
        or set(arg) != {"query", "key"}
        or not isinstance(arg["query"], dict)
        or not isinstance(arg["key"], str)
        or not isinstance(arg["query"].get("className"), str)
    ):
        raise ParseError(errors.INVALID_QUERY, f"improper usage of {op}")
    query = arg["query"]
    sub = parse_where(query.get("where", {}), master=master, depth=depth + 1)
    return Select(key, query["className"], sub, arg["key"], negate=op == "$dontSelect")


_RELATIVE = re.compile(r"^(in\s+)?(.+?)(\s+ago)?$", re.IGNORECASE)
_UNIT_SECONDS = {
    "yr": 31536000, "year": 31536000, "wk": 604800, "week": 604800, "d": 86400, "day": 86400,
    "hr": 3600, "hour": 3600, "min": 60, "minute": 60, "sec": 1, "second": 1,
}


def relative_time(text: Any) -> str:
    """Resolve ``"3 days ago"`` / ``"in 2 hours"`` / ``"now"`` to an ISO date, as parse-server does."""
    from datetime import UTC, datetime, timedelta

    if not isinstance(text, str):
        raise _bad_json("bad $relativeTime ($relativeTime) value")
    phrase = text.strip().lower()
    now = datetime.now(UTC)
    if phrase == "now":
        return codec.format_iso(now)
    match = _RELATIVE.match(phrase)
    future, past = bool(match and match.group(1)), bool(match and match.group(3))
    if not match or future == past:
        raise _bad_json("bad $relativeTime ($relativeTime) value")
    parts = match.group(2).split()
    if len(parts) % 2:
        raise _bad_json("bad $relativeTime ($relativeTime) value")
    seconds = 0.0
    for amount, unit in zip(parts[::2], parts[1::2], strict=True):
        try:
            number = float(amount)
        except ValueError:
            raise _bad_json(f"bad $relativeTime ({amount}) value") from None
        unit = unit.rstrip("s") if unit not in ("s",) else "sec"
        if unit not in _UNIT_SECONDS:
            raise _bad_json(f"bad $relativeTime ({unit}) value")
        seconds += number * _UNIT_SECONDS[unit]
    delta = timedelta(seconds=seconds)
    return codec.format_iso(now + delta if future else now - delta)


# --- find options -----------------------------------------------------------------------------------


@dataclass
class SortKey:
    field: str
    descending: bool = False


@dataclass
class FindOptions:
    where: Node = field(default_factory=MatchAll)
    limit: int = 100
    skip: int = 0
    order: list[SortKey] = field(default_factory=list)
    keys: list[str] | None = None
    exclude_keys: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    include_all: bool = False
    count: bool = False
    redirect_key: str | None = None
    explain: bool = False


FIND_PARAMS = frozenset((
    "where", "limit", "skip", "order", "count", "keys", "excludeKeys", "include", "includeAll",
    "redirectClassNameForKey", "readPreference", "includeReadPreference", "subqueryReadPreference",
    "hint", "explain", "comment",
))
GET_PARAMS = frozenset(("keys", "include", "excludeKeys", "readPreference", "includeReadPreference",
                        "subqueryReadPreference"))


def _int_param(name: str, value: Any) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ParseError(errors.INVALID_QUERY, f"Invalid parameter for query: {name}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ParseError(errors.INVALID_QUERY, f"Invalid parameter for query: {name}")
    return value


def _list_param(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if value is None or value == "":
        return []
    return [part for part in str(value).split(",") if part]


def where_json(where: Any) -> Any:
    """A ``where`` given as a JSON string (as in a query string) decoded; 107 if it is not JSON."""
    if isinstance(where, str):
        import orjson

        try:
            return orjson.loads(where)
        except orjson.JSONDecodeError:
            raise ParseError(errors.INVALID_JSON, "where parameter is not valid JSON") from None
    return where


def parse_find_options(params: dict[str, Any], *, master: bool, default_limit: int = 100,
                       max_limit: int | None = None, allowed: frozenset[str] = FIND_PARAMS) -> FindOptions:
    """Validate find parameters (102 for an unknown one) and parse them."""
    for name in params:
        if name not in allowed:
            raise ParseError(errors.INVALID_QUERY, f"Invalid parameter for query: {name}")
    opts = FindOptions()
    opts.where = parse_where(where_json(params.get("where")), master=master)
    opts.limit = _int_param("limit", params["limit"]) if "limit" in params else default_limit
    if opts.limit < 0:
        opts.limit = default_limit
    if max_limit is not None:
        opts.limit = min(opts.limit, max_limit)
    if "skip" in params:
        opts.skip = _int_param("skip", params["skip"])
        if opts.skip < 0:
            raise ParseError(errors.INVALID_QUERY, "Invalid parameter for query: skip")
    for part in _list_param(params.get("order")):
        part = part.strip()
        descending = part.startswith("-")
        name = part[1:] if descending else part
        if name.startswith("authData."):
            raise ParseError(errors.INVALID_KEY_NAME, f"Cannot sort by {name}")
        if name:
            opts.order.append(SortKey(name, descending))
    if "keys" in params:
        opts.keys = [k.strip() for k in _list_param(params["keys"])]
    opts.exclude_keys = [k.strip() for k in _list_param(params.get("excludeKeys"))]
    opts.include = [k.strip() for k in _list_param(params.get("include"))]
    if params.get("includeAll") or "*" in opts.include:
        opts.include_all = True
        opts.include = [k for k in opts.include if k != "*"]
    redirect = params.get("redirectClassNameForKey")
    if redirect is not None:
        if not isinstance(redirect, str):
            raise ParseError(errors.INVALID_QUERY, "Invalid parameter for query: redirectClassNameForKey")
        opts.redirect_key = redirect
    count = params.get("count")
    opts.count = bool(count) and count not in ("0", "false")
    explain = params.get("explain")
    opts.explain = bool(explain) and explain not in ("0", "false")
    if opts.explain and not master:
        raise ParseError(errors.INVALID_QUERY, "Using the explain query parameter requires the master key")
    return opts
