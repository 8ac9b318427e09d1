"""Parse error codes and the exception that carries them."""

from __future__ import annotations

OTHER_CAUSE = -1
INTERNAL_SERVER_ERROR = 1
OBJECT_NOT_FOUND = 101
INVALID_QUERY = 102
INVALID_CLASS_NAME = 103
MISSING_OBJECT_ID = 104
INVALID_KEY_NAME = 105
INVALID_POINTER = 106
INVALID_JSON = 107
COMMAND_UNAVAILABLE = 108
INCORRECT_TYPE = 111
OPERATION_FORBIDDEN = 119
INVALID_NESTED_KEY = 121
INVALID_ACL = 123
OBJECT_TOO_LARGE = 116
DUPLICATE_VALUE = 137
VALIDATION_ERROR = 142
USERNAME_MISSING = 200
PASSWORD_MISSING = 201
USERNAME_TAKEN = 202
EMAIL_TAKEN = 203
EMAIL_MISSING = 204
EMAIL_NOT_FOUND = 205
SESSION_MISSING = 206
INVALID_EMAIL_ADDRESS = 125
INVALID_ROLE_NAME = 139
INVALID_SESSION_TOKEN = 209
INVALID_SCHEMA_OPERATION = 255


class ParseError(Exception):
    """An error answered to the client as ``{"code": code, "error": message}``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        if self.code == INTERNAL_SERVER_ERROR:
            return 500
        if self.code == OBJECT_NOT_FOUND:
            return 404
        return 400

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "error": self.message}

    def __repr__(self) -> str:
        return f"ParseError({self.code}, {self.message!r})"


class HTTPError(Exception):
    """An error parse-server answers as ``{"error": message}`` with a status and no Parse code."""

    def __init__(self, status: int, message: str, *, json_content_type: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.json_content_type = json_content_type
