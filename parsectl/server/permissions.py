"""parse-server's permission rules that are not ACLs: class security, class-level permissions
(incl. pointer permissions and requiresAuthentication) and protected fields."""

from __future__ import annotations

from typing import Any

from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.schema import ClassSchema
from parsectl.server.auth import Auth

# classes only the master key may touch (parse-server's classesWithMasterOnlyAccess)
MASTER_ONLY_CLASSES = ("_JobStatus", "_PushStatus", "_Hooks", "_GlobalConfig", "_GraphQLConfig", "_JobSchedule",
                       "_Audience", "_Idempotency")  # parse-server's classesWithMasterOnlyAccess
_READ_OPERATIONS = ("find", "count", "get")
_WRITE_OPERATIONS = ("update", "delete")
DEFAULT_PROTECTED_FIELDS: dict[str, dict[str, list[str]]] = {"_User": {"*": ["email"]}}


def enforce_class_security(method: str, class_name: str, auth: Auth) -> None:
    """Installations cannot be listed or deleted by clients; system classes are master only; the
    read-only master key cannot write."""
    if not auth.master:
        if class_name == "_Installation" and method in ("delete", "find"):
            raise ParseError(errors.OPERATION_FORBIDDEN,
                             f"Clients aren't allowed to perform the {method} operation on the installation "
                             "collection.")
        if class_name in MASTER_ONLY_CLASSES:
            raise ParseError(errors.OPERATION_FORBIDDEN,
                             f"Clients aren't allowed to perform the {method} operation on the {class_name} "
                             "collection.")
    if auth.read_only and method in ("create", "update", "delete"):
        raise ParseError(errors.OPERATION_FORBIDDEN,
                         f"read-only masterKey isn't allowed to perform the {method} operation.")


def _pointer_fields(clp: dict[str, Any], operation: str) -> list[str]:
    fields: list[str] = []
    legacy = "readUserFields" if operation in _READ_OPERATIONS else (
        "writeUserFields" if operation in _WRITE_OPERATIONS else None)
    if legacy and isinstance(clp.get(legacy), list):
        fields += [f for f in clp[legacy] if isinstance(f, str)]
    perms = clp.get(operation)
    if isinstance(perms, dict) and isinstance(perms.get("pointerFields"), list):
        fields += [f for f in perms["pointerFields"] if isinstance(f, str)]
    return fields


def check_clp(schema: ClassSchema, operation: str, auth: Auth) -> query.Node | None:
    """None when the caller may perform ``operation``; a constraint when only pointer permissions allow it
    (the objects must point at the caller); raises 119 (101 for requiresAuthentication) otherwise."""
    if auth.master:
        return None
    perms = schema.clp.get(operation)
    if perms is None:
        return None
    if any(perms.get(entity) for entity in auth.acl_group()):
        return None
    fields = _pointer_fields(schema.clp, operation)
    if perms.get("requiresAuthentication"):
        if not auth.user_id:
            raise ParseError(errors.OBJECT_NOT_FOUND, "Permission denied, user needs to be authenticated.")
        if not fields:
            return None
    if operation == "addField" and auth.user_id and _pointer_fields(schema.clp, "update"):
        return None  # as parse-server: writeUserFields let their users add fields
    if fields:
        # pointer permissions: only objects pointing at the caller (none for an anonymous caller)
        if not auth.user_id:
            return query.MatchNone()
        me = codec.pointer("_User", auth.user_id)
        return query.Or([query.Compare(f, "eq", me) for f in fields])
    raise ParseError(errors.OPERATION_FORBIDDEN,
                     f"Permission denied for action {operation} on class {schema.class_name}.")


def protected_fields(schema: ClassSchema, auth: Auth, configured: dict[str, Any] | None = None,
                     obj: dict[str, Any] | None = None) -> set[str]:
    """Fields hidden from this caller: the intersection of the lists of every protectedFields entry
    that applies to it (``*``, ``authenticated``, its roles, its id, and ``userField:<pointer>`` when
    ``obj``'s pointer field points at the caller)."""
    if auth.master:
        return set()
    rules: dict[str, set[str]] = {}
    for source in ((configured or DEFAULT_PROTECTED_FIELDS).get(schema.class_name, {}),
                   schema.clp.get("protectedFields") or {}):
        for entity, names in source.items():
            if isinstance(names, list):
                rules.setdefault(entity, set()).update(n for n in names if isinstance(n, str))
    applicable = ["*", *auth.roles]
    if auth.user_id:
        applicable += ["authenticated", auth.user_id]
        if obj is not None:
            for entity in rules:
                if entity.startswith("userField:") and _points_at(obj.get(entity[10:]), auth.user_id):
                    applicable.append(entity)
    lists = [rules[e] for e in applicable if e in rules]
    if not lists:
        return set()
    hidden = set(lists[0])
    for names in lists[1:]:
        hidden &= names
    return hidden


def has_user_field_rules(schema: ClassSchema) -> bool:
    return any(k.startswith("userField:") for k in (schema.clp.get("protectedFields") or {}))


def _points_at(value: Any, user_id: str) -> bool:
    if codec.is_pointer(value):
        return value["objectId"] == user_id
    if isinstance(value, list):
        return any(codec.is_pointer(v) and v["objectId"] == user_id for v in value)
    return False


def query_fields(node: query.Node) -> set[str]:
    """Top-level field names a where tree constrains."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, query.And | query.Or):
            stack.extend(item.children)
        elif isinstance(item, query.Not):
            stack.append(item.child)
        elif hasattr(item, "field"):
            found.add(item.field.split(".", 1)[0])
    return found


def check_protected_query(schema: ClassSchema, where: query.Node, hidden: set[str]) -> None:
    if query_fields(where) & hidden:
        raise ParseError(errors.OPERATION_FORBIDDEN, "Permission denied")
