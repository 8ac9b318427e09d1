"""Users, sessions and roles: password hashing, session tokens, sign-up/log-in/log-out, role membership.

Passwords are bcrypt hashes at cost 10 (``$2a$``, ``$2b$`` and ``$2y$`` hashes written by hosted Parse
and node parse-server all verify). Hashing runs in a worker thread so a log-in never stalls other
requests. Session tokens are ``r:`` + 32 hex characters, kept in ``_Session`` as parse-server does.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import bcrypt

from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.schema import ClassSchema
from parsectl.server.auth import Auth

if TYPE_CHECKING:
    from parsectl.server.rest import RestService

BCRYPT_COST = 10
SESSION_LENGTH = timedelta(days=365)
ROLE_CACHE_SECONDS = 5.0
_EMAIL = re.compile(r"^.+@.+$")
_ROLE_NAME = re.compile(r"^[0-9a-zA-Z\-_ ]+$")


async def hash_password(password: str) -> str:
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt(BCRYPT_COST))
    return hashed.decode()


async def check_password(password: str, hashed: Any) -> bool:
    if not isinstance(hashed, str) or not hashed.startswith("$2"):
        return False
    # node's @node-rs/bcrypt writes $2y$, hosted Parse $2a$; the algorithm is the same
    normalized = "$2b$" + hashed[4:] if hashed[:4] in ("$2y$", "$2a$") else hashed
    try:
        return await asyncio.to_thread(bcrypt.checkpw, password.encode(), normalized.encode())
    except ValueError:
        return False


def random_username() -> str:
    """A 25-character username for an account created from authData alone, as parse-server makes."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(25))


def new_session_token() -> str:
    return "r:" + secrets.token_hex(16)


def exact(value: str) -> str:
    """A regex matching ``value`` exactly (for case-insensitive uniqueness checks)."""
    return "^" + re.escape(value) + "$"


def validate_role_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ParseError(errors.INCORRECT_TYPE, "name is required.")
    if not _ROLE_NAME.match(name):
        raise ParseError(errors.INVALID_ROLE_NAME, "A role's name can be only contain alphanumeric characters, _, -, and spaces.")


def validate_email(email: Any) -> None:
    if not isinstance(email, str) or not _EMAIL.match(email):
        raise ParseError(errors.INVALID_EMAIL_ADDRESS, "Email address format is invalid.")


class Sessions:
    """Session tokens and role membership, with short caches as parse-server keeps (cacheTTL 5 s)."""

    def __init__(self, rest: RestService) -> None:
        self.rest = rest
        self._roles: dict[str, tuple[float, list[str]]] = {}

    def clear_role_cache(self) -> None:
        self._roles.clear()

    async def resolve(self, auth: Auth) -> None:
        """Set the user (and roles) of a session token; 209 if the token is unknown or expired."""
        schema = await self.rest.schemas.get("_Session")
        invalid = ParseError(errors.INVALID_SESSION_TOKEN, "Invalid session token")
        if schema is None:
            raise invalid
        rows = await self.rest.storage.find(schema, query.Compare("sessionToken", "eq", auth.session_token),
                                            limit=1)
        if not rows or not codec.is_pointer(rows[0].get("user")):
            raise invalid
        expires = rows[0].get("expiresAt")
        if isinstance(expires, dict) and expires.get("iso", "") < codec.now_iso():
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Session token is expired.")
        auth.user_id = rows[0]["user"]["objectId"]
        auth.session_id = rows[0]["objectId"]
        auth.roles = await self.roles_of(auth.user_id)

    async def resolve_legacy(self, auth: Auth) -> None:
        """A hosted-Parse legacy (non ``r:``) token, accepted only by /upgradeToRevocableSession."""
        schema = await self.rest.schemas.get("_User")
        rows = await self.rest.storage.find(schema, query.Compare("_session_token", "eq", auth.session_token),
                                            limit=2) if schema else []
        if len(rows) != 1:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "invalid legacy session token")
        auth.user_id = rows[0]["objectId"]
        auth.roles = await self.roles_of(auth.user_id)

    async def upgrade(self, auth: Auth) -> dict[str, Any]:
        """Trade a legacy token for a revocable session (the legacy token is removed from the user)."""
        if not auth.user_id:
            raise ParseError(errors.OBJECT_NOT_FOUND, "invalid session")
        token = await self.create(auth.user_id, auth.installation_id, "upgrade", None)
        schema = await self.rest.schemas.get("_User")
        if schema is not None:
            await self.rest.storage.update(schema, query.Compare("objectId", "eq", auth.user_id),
                                           {"_session_token": None})
        rows = await self.rest.storage.find(await self.rest.schemas.get("_Session"),
                                            query.Compare("sessionToken", "eq", token), limit=1)
        session = {k: v for k, v in rows[0].items() if not k.startswith("_") and k not in ("objectId",
                                                                                          "createdAt", "updatedAt")}
        return session

    async def roles_of(self, user_id: str) -> list[str]:
        """``role:Name`` for each role holding the user, and every role those inherit from (cycles cut)."""
        cached = self._roles.get(user_id)
        if cached and time.monotonic() - cached[0] < ROLE_CACHE_SECONDS:
            return cached[1]
        schema = await self.rest.schemas.get("_Role")
        names: list[str] = []
        if schema is not None:
            seen: set[str] = set()
            frontier = await self.rest.storage.find(
                schema, query.Compare("users", "eq", codec.pointer("_User", user_id)))
            while frontier:
                fresh = [r for r in frontier if r["objectId"] not in seen]
                seen.update(r["objectId"] for r in fresh)
                names += [r["name"] for r in fresh if isinstance(r.get("name"), str)]
                if not fresh:
                    break
                pointers = [codec.pointer("_Role", r["objectId"]) for r in fresh]
                frontier = await self.rest.storage.find(schema, query.In("roles", pointers))
        roles = [f"role:{n}" for n in names]
        self._roles[user_id] = (time.monotonic(), roles)
        return roles

    async def create(self, user_id: str, installation_id: str | None, action: str,
                     provider: str | None = "password") -> str:
        """A new session for the user (replacing the user's session on that installation)."""
        schema = await self.rest.schemas.get("_Session") or await self.rest.schemas.create("_Session")
        token = new_session_token()
        now = datetime.now(UTC)
        stored = {
            "objectId": _new_id(), "createdAt": codec.format_iso(now), "updatedAt": codec.format_iso(now),
            "user": codec.pointer("_User", user_id), "sessionToken": token,
            "createdWith": {"action": action, **({"authProvider": provider} if provider else {})},
            "expiresAt": codec.date(codec.format_iso(now + self.session_length())),
        }
        if installation_id:
            stored["installationId"] = installation_id
            await self.rest.storage.delete(schema, query.And([
                query.Compare("user", "eq", codec.pointer("_User", user_id)),
                query.Compare("installationId", "eq", installation_id)]), many=True)
        await self.rest.storage.insert(schema, stored)
        return token

    def session_length(self) -> timedelta:
        return timedelta(seconds=self.rest.options.session_length)

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> None:
        schema = await self.rest.schemas.get("_Session")
        if schema is None:
            return
        where: query.Node = query.Compare("user", "eq", codec.pointer("_User", user_id))
        if keep:
            where = query.And([where, query.Compare("sessionToken", "ne", keep)])
        await self.rest.storage.delete(schema, where, many=True)


def _new_id() -> str:
    from parsectl.server.rest import new_object_id

    return new_object_id()


async def find_user_for_login(rest: RestService, username: Any, email: Any) -> dict[str, Any] | None:
    schema = await rest.schemas.get("_User")
    if schema is None:
        return None
    if email and username:
        where: query.Node = query.And([query.Compare("email", "eq", email), query.Compare("username", "eq", username)])
    elif email:
        where = query.Compare("email", "eq", email)
    else:
        where = query.Or([query.Compare("username", "eq", username), query.Compare("email", "eq", username)])
    rows = await rest.storage.find(schema, where, limit=2)
    if len(rows) > 1:
        rows = [r for r in rows if r.get("username") == username] or rows[:1]
    return rows[0] if rows else None


async def ensure_unique(rest: RestService, schema: ClassSchema, field: str, value: str,
                        object_id: str | None, code: int, message: str) -> None:
    """Case-insensitive uniqueness of ``username``/``email``, as parse-server checks it."""
    where: query.Node = query.Regex(field, exact(value), "i")
    if object_id:
        where = query.And([where, query.Compare("objectId", "ne", object_id)])
    if await rest.storage.find(schema, where, limit=1):
        raise ParseError(code, message)


# --- third-party and anonymous log-in (authData) ------------------------------------------------------------

AUTH_DATA_UNSUPPORTED = "This authentication method is unsupported."


def validate_auth_data(auth_data: Any, enabled: set[str]) -> dict[str, Any]:
    """Check an ``authData`` object: known providers only (252), and each a ``{"id": <non-empty string>}``
    so that an empty or operator id can never match someone else's account."""
    if not isinstance(auth_data, dict) or not auth_data:
        raise ParseError(errors.INVALID_JSON, "authData should be an object.")
    for provider, data in auth_data.items():
        if data is None:
            continue  # unlinking
        if provider not in enabled:
            raise ParseError(252, AUTH_DATA_UNSUPPORTED)
        if not isinstance(data, dict):
            raise ParseError(252, AUTH_DATA_UNSUPPORTED)
        if "id" in data and (not isinstance(data["id"], str) or not data["id"]):
            raise ParseError(162, f"Invalid authData id for provider '{provider}'.")
    return auth_data


def provided_auth_data(auth_data: dict[str, Any]) -> dict[str, Any]:
    """The providers that actually carry an id (``{"anonymous": {}}`` logs nobody in)."""
    return {p: d for p, d in auth_data.items() if isinstance(d, dict) and d.get("id")}


async def users_with_auth_data(rest: RestService, auth_data: dict[str, Any]) -> list[dict[str, Any]]:
    schema = await rest.schemas.get("_User")
    if schema is None:
        return []
    clauses = [query.Compare(f"authData.{provider}.id", "eq", data["id"])
               for provider, data in auth_data.items() if data is not None]
    if not clauses:
        return []
    return await rest.storage.find(schema, query.Or(clauses), limit=2)


class AuthProviders:
    """Third-party log-in providers (parse-server's ``auth`` option) besides anonymous users.

    ``auth = {"myprovider": {"module": "package.module:validate", ...options}}`` (or, from Python, the
    function itself). ``validate(auth_data, options)`` — sync or async — checks one provider's authData
    (e.g. a token against the provider's API) and raises :class:`ParseError` to refuse; any other exception
    refuses with 101 "<provider> auth is invalid for this user."."""

    def __init__(self, config: dict[str, Any] | None, anonymous: bool) -> None:
        self.hooks: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.anonymous = anonymous
        for provider, spec in (config or {}).items():
            if provider == "anonymous":
                continue
            if callable(spec):
                self.hooks[provider] = (spec, {})
                continue
            if not isinstance(spec, dict) or not isinstance(spec.get("module"), str):
                raise ValueError(f"option 'auth.{provider}' must be {{\"module\": \"package.module:function\"}}")
            self.hooks[provider] = (_load_callable(provider, spec["module"]),
                                    {k: v for k, v in spec.items() if k != "module"})

    def names(self) -> set[str]:
        return set(self.hooks) | ({"anonymous"} if self.anonymous else set())

    async def validate(self, auth_data: dict[str, Any]) -> None:
        for provider, data in provided_auth_data(auth_data).items():
            hook = self.hooks.get(provider)
            if hook is None:
                continue
            function, options = hook
            try:
                outcome = function(data, options)
                if asyncio.iscoroutine(outcome):
                    await outcome
            except ParseError:
                raise
            except Exception:  # noqa: BLE001 - a provider's refusal, whatever form it takes
                raise ParseError(errors.OBJECT_NOT_FOUND, f"{provider} auth is invalid for this user.") from None


def _load_callable(provider: str, target: str) -> Any:
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr or "validate")
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"option 'auth.{provider}': cannot load {target!r} ({exc})") from None
    if not callable(function):
        raise ValueError(f"option 'auth.{provider}': {target!r} is not callable")
    return function
