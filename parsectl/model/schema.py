"""Class schemas: name rules, default columns, class-level permission defaults, type checks."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from parsectl.model import errors
from parsectl.model.codec import FieldType, same_type, type_to_string
from parsectl.model.errors import ParseError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_JOIN = re.compile(r"^_Join:[A-Za-z0-9_]+:[A-Za-z0-9_]+$")

SYSTEM_CLASSES = (
    "_User",
    "_Installation",
    "_Role",
    "_Session",
    "_Product",
    "_PushStatus",
    "_JobStatus",
    "_JobSchedule",
    "_Audience",
    "_Idempotency",
)
VOLATILE_CLASSES = ("_JobStatus", "_PushStatus", "_Hooks", "_GlobalConfig", "_GraphQLConfig", "_JobSchedule",
                    "_Audience", "_Idempotency")

BASE_FIELDS: dict[str, FieldType] = {
    "objectId": {"type": "String"},
    "createdAt": {"type": "Date"},
    "updatedAt": {"type": "Date"},
    "ACL": {"type": "ACL"},
}

DEFAULT_FIELDS: dict[str, dict[str, FieldType]] = {
    "_User": {
        "username": {"type": "String"},
        "password": {"type": "String"},
        "email": {"type": "String"},
        "emailVerified": {"type": "Boolean"},
        "authData": {"type": "Object"},
    },
    "_Installation": {
        "installationId": {"type": "String"},
        "deviceToken": {"type": "String"},
        "channels": {"type": "Array"},
        "deviceType": {"type": "String"},
        "pushType": {"type": "String"},
        "GCMSenderId": {"type": "String"},
        "timeZone": {"type": "String"},
        "localeIdentifier": {"type": "String"},
        "badge": {"type": "Number"},
        "appVersion": {"type": "String"},
        "appName": {"type": "String"},
        "appIdentifier": {"type": "String"},
        "parseVersion": {"type": "String"},
    },
    "_Role": {
        "name": {"type": "String"},
        "users": {"type": "Relation", "targetClass": "_User"},
        "roles": {"type": "Relation", "targetClass": "_Role"},
    },
    "_Session": {
        "user": {"type": "Pointer", "targetClass": "_User"},
        "installationId": {"type": "String"},
        "sessionToken": {"type": "String"},
        "expiresAt": {"type": "Date"},
        "createdWith": {"type": "Object"},
    },
}

# Internal _User fields parse-server keeps next to the schema's fields (never returned to clients).
USER_INTERNAL_FIELDS: dict[str, FieldType] = {
    "_hashed_password": {"type": "String"},
    "_email_verify_token_expires_at": {"type": "Date"},
    "_email_verify_token": {"type": "String"},
    "_account_lockout_expires_at": {"type": "Date"},
    "_failed_login_count": {"type": "Number"},
    "_perishable_token": {"type": "String"},
    "_perishable_token_expires_at": {"type": "Date"},
    "_password_changed_at": {"type": "Date"},
    "_password_history": {"type": "Array"},
}

# Classes parse-server creates when it starts on a database
STARTUP_CLASSES = ("_User", "_Role")

# Fields a client never writes directly (they are set by the server).
READ_ONLY_FIELDS = frozenset(("objectId", "createdAt", "updatedAt"))


def default_clp() -> dict[str, Any]:
    return {
        "find": {"*": True},
        "count": {"*": True},
        "get": {"*": True},
        "create": {"*": True},
        "update": {"*": True},
        "delete": {"*": True},
        "addField": {"*": True},
        "protectedFields": {"*": []},
    }


def invalid_class_name_message(class_name: str) -> str:
    return (
        f"Invalid classname: {class_name}, classnames can only have alphanumeric characters and _, "
        "and must start with an alpha character "
    )


def class_name_is_valid(class_name: str) -> bool:
    return (
        class_name in SYSTEM_CLASSES
        or class_name in VOLATILE_CLASSES
        or bool(_JOIN.match(class_name))
        or bool(_NAME.match(class_name))
    )


def check_class_name(class_name: str) -> None:
    if not isinstance(class_name, str) or not class_name_is_valid(class_name):
        raise ParseError(errors.INVALID_CLASS_NAME, invalid_class_name_message(str(class_name)))


def field_name_is_valid(name: str) -> bool:
    return bool(_NAME.match(name)) and name not in ("className", "length")


def check_field_name(name: str) -> None:
    if not field_name_is_valid(name):
        raise ParseError(errors.INVALID_KEY_NAME, f"Invalid field name: {name}.")


@dataclass
class ClassSchema:
    """One class's schema: its fields (including the defaults), CLPs and indexes."""

    class_name: str
    fields: dict[str, FieldType]
    clp: dict[str, Any] = field(default_factory=default_clp)
    indexes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, class_name: str, fields: dict[str, FieldType] | None = None) -> ClassSchema:
        all_fields = dict(BASE_FIELDS)
        all_fields.update(DEFAULT_FIELDS.get(class_name, {}))
        all_fields.update(fields or {})
        return cls(class_name, all_fields)

    def field_type(self, name: str) -> FieldType | None:
        return self.fields.get(name)

    def relation_fields(self) -> dict[str, str]:
        return {name: t["targetClass"] for name, t in self.fields.items() if t["type"] == "Relation"}

    def check_value_type(self, name: str, value_type: FieldType | None) -> bool:
        """True if ``name`` needs adding with ``value_type``; raise 111 if it conflicts with the schema."""
        if value_type is None:
            return False
        expected = self.fields.get(name)
        if expected is None:
            return True
        if expected["type"] == "ACL" and value_type["type"] == "Object":
            return False
        if not same_type(expected, value_type):
            raise ParseError(
                errors.INCORRECT_TYPE,
                f"schema mismatch for {self.class_name}.{name}; expected {type_to_string(expected)} "
                f"but got {type_to_string(value_type)}",
            )
        return False

    def to_json(self) -> dict[str, Any]:
        """The ``/schemas`` wire shape."""
        return {
            "className": self.class_name,
            "fields": copy.deepcopy(self.fields),
            "classLevelPermissions": copy.deepcopy(self.clp),
            **({"indexes": copy.deepcopy(self.indexes)} if self.indexes else {}),
        }
