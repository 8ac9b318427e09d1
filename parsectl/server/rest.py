"""REST semantics for objects: the find, get, create, update and delete pipelines.

Routers call these with an :class:`~parsectl.server.auth.Auth` and request data; the rules
(class existence and client class creation, class-level permissions, ACLs, schema typing,
subqueries, include, keys) live here once, for every router and every storage adapter.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from parsectl.files import FilesAdapter, FilesConfig, file_url
from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.ops import Op, RelationOp, parse_value
from parsectl.model.query import FindOptions
from parsectl.model.schema import SYSTEM_CLASSES, ClassSchema, check_class_name, check_field_name
from parsectl.server import users
from parsectl.server.auth import Auth
from parsectl.server.config import ServerOptions
from parsectl.server.permissions import (
    check_clp,
    check_protected_query,
    enforce_class_security,
    has_user_field_rules,
    protected_fields,
)
from parsectl.server.schemas import SchemaController
from parsectl.storage.base import StorageAdapter, StoredObject

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_TABLE = bytes(ord(_ID_ALPHABET[b % 62]) if b < 248 else 0 for b in range(256))
_ID_REJECT = bytes(range(248, 256))
_DENYLIST_KEYS = ("constructor", "__proto__")
_ECHOED_OPS = ("Increment", "Add", "AddUnique", "Remove")
_ALWAYS_KEYS = ("objectId", "createdAt", "updatedAt", "ACL")
_METHOD = {"find": "find", "count": "find", "get": "get", "create": "create", "update": "update",
           "delete": "delete", "addField": "update"}


def new_object_id(size: int = 10) -> str:
    """``size`` characters from [A-Za-z0-9], uniformly, from the OS random source: bytes 0-247 map to
    ``byte % 62`` (248 = 4 * 62, so every character is equally likely), 248-255 are dropped, all in C."""
    while True:
        chars = secrets.token_bytes(size + 8).translate(_ID_TABLE, _ID_REJECT)
        if len(chars) >= size:
            return chars[:size].decode("ascii")


def _permission_denied() -> ParseError:
    return ParseError(errors.OPERATION_FORBIDDEN, "Permission denied")


def _check_denylist(value: Any, depth: int = 0) -> None:
    if depth > codec.MAX_NESTING:
        raise ParseError(errors.INVALID_JSON, "Object is nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _DENYLIST_KEYS or (key == "_bsontype" and item == "Code"):
                raise ParseError(errors.INVALID_KEY_NAME,
                                 f'Prohibited keyword in request data: {{"key":"{key}"}}.')
            _check_denylist(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_denylist(item, depth + 1)


class RestService:
    def __init__(self, options: ServerOptions, storage: StorageAdapter, schemas: SchemaController) -> None:
        self.options = options
        self.storage = storage
        self.schemas = schemas
        self.sessions = users.Sessions(self)
        self.auth_providers = users.AuthProviders(options.auth, options.enable_anonymous_users)

    # --- URLs -----------------------------------------------------------------------------------------
    def server_url(self) -> str:
        return (self.options.public_server_url or self.options.server_url or "").rstrip("/")

    files_adapter: FilesAdapter | None = None  # set by ParseServer
    account: Any = None  # the AccountService (email verification, password reset), set by ParseServer
    cloud: Any = None  # Cloud Code hooks (parsectl.cloud.CloudRuntime), set by ParseServer; None: no cloud code

    def file_url(self, name: str) -> str:
        config = FilesConfig(self.options.app_id, self.server_url())
        return file_url(self.files_adapter, config, self.options.file_key, name)

    # --- permissions --------------------------------------------------------------------------------
    def _check_clp(self, schema: ClassSchema, operation: str, auth: Auth) -> None:
        """A CLP check for operations that cannot be narrowed by pointer permissions (create, addField)."""
        if check_clp(schema, operation, auth) is not None:
            raise ParseError(errors.OPERATION_FORBIDDEN,
                             f"Permission denied for action {operation} on class {schema.class_name}.")

    async def _schema_for(self, auth: Auth, class_name: str, operation: str
                          ) -> tuple[ClassSchema | None, query.Node | None]:
        """The class's schema after class security, existence and CLP checks, and the constraint
        pointer permissions add (None if none); the schema is None when a master reads a missing class."""
        enforce_class_security(_METHOD[operation], class_name, auth)
        if class_name == "_Session" and not auth.master and not auth.user_id:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Invalid session token")
        schema = await self.schemas.get(class_name)
        if schema is None:
            if not auth.master and not self.options.allow_client_class_creation:
                raise _permission_denied()
            check_class_name(class_name)
            return None, None
        constraint = check_clp(schema, operation, auth)
        if class_name == "_Session" and not auth.master:
            mine = query.Compare("user", "eq", codec.pointer("_User", auth.user_id))
            constraint = mine if constraint is None else query.And([constraint, mine])
        return schema, constraint

    @staticmethod
    def _narrow(where: query.Node, constraint: query.Node | None) -> query.Node:
        return where if constraint is None else query.And([where, constraint])

    def _hidden(self, schema: ClassSchema, auth: Auth) -> set[str]:
        return protected_fields(schema, auth, self.options.protected_fields)

    def _read_filter(self, auth: Auth, where: query.Node) -> query.Node:
        if auth.master:
            return where
        return query.And([where, query.PermIn("_rperm", auth.acl_group())])

    def _write_filter(self, auth: Auth, where: query.Node) -> query.Node:
        if auth.master:
            return where
        return query.And([where, query.PermIn("_wperm", auth.acl_group())])

    # --- output ---------------------------------------------------------------------------------------
    def to_wire(self, schema: ClassSchema, obj: StoredObject, auth: Auth,
                hidden: set[str] | None = None) -> dict[str, Any]:
        """A stored object as the REST API returns it (``hidden``: protected fields to leave out)."""
        if hidden:
            if schema.class_name == "_User" and obj.get("objectId") == auth.user_id:
                hidden = None  # users see all of their own record
            elif has_user_field_rules(schema):
                hidden = protected_fields(schema, auth, self.options.protected_fields, obj)
        out = {key: value for key, value in obj.items() if key[0] != "_"}
        if hidden:
            for key in hidden:
                out.pop(key, None)
        files, relations = _wire_shape(schema)
        for name in files:
            value = out.get(name)
            if type(value) is dict and value.get("__type") == "File":
                out[name] = {"__type": "File", "name": value["name"], "url": self.file_url(value["name"])}
        for name, target in relations:
            out[name] = codec.relation(target)
        if schema.class_name == "_User" and not auth.master and obj.get("objectId") != auth.user_id:
            out.pop("authData", None)
        acl = codec.perms_to_acl(obj.get("_rperm"), obj.get("_wperm"))
        if acl is not None:
            out["ACL"] = acl
        return out

    # --- subqueries ---------------------------------------------------------------------------------------
    async def _resolve(self, auth: Auth, schema: ClassSchema, node: query.Node) -> query.Node:
        """Run ``$inQuery``/``$select`` subqueries (with the caller's auth) and check ``$relatedTo``."""
        if isinstance(node, query.And | query.Or):
            children = [await self._resolve(auth, schema, c) for c in node.children]
            return type(node)(children)
        if isinstance(node, query.Not):
            return query.Not(await self._resolve(auth, schema, node.child))
        if isinstance(node, query.InQuery):
            sub_schema, constraint = await self._schema_for(auth, node.class_name, "find")
            if sub_schema is None:
                rows = []
            else:
                where = await self._resolve(auth, sub_schema, node.where)
                check_protected_query(sub_schema, where, self._hidden(sub_schema, auth))
                rows = await self.storage.find(sub_schema, self._read_filter(auth, self._narrow(where, constraint)))
            pointers = [codec.pointer(node.class_name, r["objectId"]) for r in rows]
            return query.In(node.field, pointers, negate=node.negate)
        if isinstance(node, query.Select):
            sub_schema, constraint = await self._schema_for(auth, node.class_name, "find")
            values: list[Any] = []
            if sub_schema is not None:
                where = await self._resolve(auth, sub_schema, node.where)
                hidden = self._hidden(sub_schema, auth)
                check_protected_query(sub_schema, where, hidden)
                if node.key.split(".", 1)[0] in hidden:
                    raise ParseError(errors.OPERATION_FORBIDDEN, "Permission denied")
                for row in await self.storage.find(sub_schema, self._read_filter(auth, self._narrow(where, constraint))):
                    value: Any = self.to_wire(sub_schema, row, auth, hidden)
                    for part in node.key.split("."):
                        value = value.get(part) if isinstance(value, dict) else None
                    if value is not None:
                        values.append(value)
            return query.In(node.field, values, negate=node.negate)
        if isinstance(node, query.RelatedTo):
            owner = await self.schemas.get(node.owner["className"])
            ftype = owner.fields.get(node.key) if owner else None
            if not ftype or ftype["type"] != "Relation" or ftype["targetClass"] != schema.class_name:
                return query.MatchNone()
            return node
        return node

    # --- find / get -----------------------------------------------------------------------------------
    async def find(self, auth: Auth, class_name: str, opts: FindOptions, *, operation: str = "find"
                   ) -> dict[str, Any]:
        if self.cloud is not None:  # Cloud Code: beforeFind/afterFind (parsectl.cloud)
            return await self.cloud.find(self, auth, class_name, opts, operation, self._find)
        return await self._find(auth, class_name, opts, operation=operation)

    async def _find(self, auth: Auth, class_name: str, opts: FindOptions, *, operation: str = "find"
                    ) -> dict[str, Any]:
        if opts.redirect_key:
            owner = await self.schemas.get(class_name)
            ftype = owner.fields.get(opts.redirect_key) if owner else None
            if ftype and ftype["type"] == "Relation":
                target = ftype["targetClass"]
                opts.redirect_key = None
                response = await self.find(auth, target, opts, operation=operation)
                for result in response["results"]:
                    result["className"] = target
                return response
        schema, constraint = await self._schema_for(auth, class_name,
                                                    "count" if opts.count and opts.limit == 0 else operation)
        if schema is None:
            return {"results": [], **({"count": 0} if opts.count else {})}
        hidden = self._hidden(schema, auth)
        resolved = await self._resolve(auth, schema, opts.where)
        check_protected_query(schema, resolved, hidden)
        for key in opts.order:
            if key.field.split(".", 1)[0] in hidden:
                raise ParseError(errors.OPERATION_FORBIDDEN, "Permission denied")
        where = self._read_filter(auth, self._narrow(resolved, constraint))
        if opts.explain:
            plan = await self.storage.explain(schema, where, skip=opts.skip, limit=opts.limit, order=opts.order)
            return {"results": plan}
        response: dict[str, Any] = {}
        if opts.limit != 0:
            rows = await self.storage.find(schema, where, skip=opts.skip, limit=opts.limit, order=opts.order)
            results = [self.to_wire(schema, row, auth, hidden) for row in rows]
            includes = _include_paths(opts, schema)
            for path in includes:
                await self._include(auth, results, path.split("."), opts)
            if opts.keys is not None or opts.exclude_keys or any("$score" in r for r in results):
                results = [_project(r, opts.keys, opts.exclude_keys) for r in results]
            response["results"] = results
        else:
            response["results"] = []
        if opts.count:
            response["count"] = await self.storage.count(schema, where)
        return response

    async def get(self, auth: Auth, class_name: str, object_id: str, opts: FindOptions) -> dict[str, Any]:
        opts.where = query.Compare("objectId", "eq", object_id)
        opts.limit = 1
        result = await self.find(auth, class_name, opts, operation="get")
        if not result["results"]:
            raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
        return result["results"][0]

    async def _include(self, auth: Auth, results: list[dict[str, Any]], path: list[str], opts: FindOptions) -> None:
        pointers: dict[str, set[str]] = {}
        for ptr in _find_pointers(results, path):
            pointers.setdefault(ptr["className"], set()).add(ptr["objectId"])
        if not pointers:
            return
        replace: dict[str, dict[str, Any]] = {}
        for class_name, ids in pointers.items():
            try:
                schema, constraint = await self._schema_for(auth, class_name, "get")
            except ParseError:
                continue
            if schema is None:
                continue
            hidden = self._hidden(schema, auth)
            where = self._read_filter(auth, self._narrow(query.In("objectId", sorted(ids)), constraint))
            for row in await self.storage.find(schema, where):
                obj = self.to_wire(schema, row, auth, hidden)
                sub_keys = _sub_keys(opts.keys, path)
                obj = _project(obj, sub_keys, _sub_keys(opts.exclude_keys, path) or [])
                replace[row["objectId"]] = {"__type": "Object", "className": class_name, **obj}
        for result in results:
            _replace_pointers(result, path, replace)

    # --- writes ------------------------------------------------------------------------------------------
    def _prepare_fields(self, class_name: str, body: dict[str, Any], *, creating: bool, auth: Auth
                        ) -> tuple[dict[str, Any], Any]:
        """Validate a write body: field names, values and ops; the ACL is returned apart. A ``_User``
        password comes back as the plain string under ``password`` (hashed by the caller)."""
        if creating:
            if "objectId" in body:
                raise ParseError(errors.INVALID_KEY_NAME, "objectId is an invalid field name.")
            if body.get("id"):
                raise ParseError(errors.INVALID_KEY_NAME, "id is an invalid field name.")
        _check_denylist(body)
        if class_name == "_User" and "emailVerified" in body and not auth.master:
            raise ParseError(errors.OPERATION_FORBIDDEN,
                             "Clients aren't allowed to manually update email verification.")
        if class_name == "_Session" and not auth.master:
            raise ParseError(errors.OPERATION_FORBIDDEN,
                             f"Clients aren't allowed to perform the {'create' if creating else 'update'} "
                             "operation on the _Session collection.")
        fields: dict[str, Any] = {}
        acl: Any = None
        for key, value in body.items():
            if key in ("createdAt", "updatedAt", "objectId", "id"):
                continue
            if key == "ACL":
                acl = codec.validate_acl(value)
                continue
            if class_name == "_User" and key == "password":
                if value is not None and not isinstance(value, str):
                    raise ParseError(errors.PASSWORD_MISSING, "password is required")
                fields[key] = value
                continue
            if class_name == "_User" and key == "authData" and value is not None:
                users.validate_auth_data(value, self._auth_providers())  # before operator keys can be seen
            if "." in key:
                raise ParseError(errors.INVALID_KEY_NAME, f"Invalid field name: {key}.")
            if key.startswith("_"):
                raise ParseError(errors.INVALID_KEY_NAME, f"Invalid field name: {key}.")
            check_field_name(key)
            fields[key] = parse_value(value)
        return fields, acl

    async def _typed_schema(self, auth: Auth, schema: ClassSchema, fields: dict[str, Any]) -> ClassSchema:
        types = {}
        for name, value in fields.items():
            if schema.class_name == "_User" and name == "password":
                continue
            ftype = value.field_type() if isinstance(value, Op) else codec.type_of(value)
            if isinstance(value, RelationOp) and not value.target:
                continue
            types[name] = ftype
        new_fields = [n for n, t in types.items() if t is not None and n not in schema.fields]
        if new_fields:
            self._check_clp(schema, "addField", auth)
        return await self.schemas.ensure_fields(schema, types)

    async def _user_fields(self, schema: ClassSchema, fields: dict[str, Any], object_id: str | None) -> None:
        """Sign-up and user-update rules: username/email uniqueness (case-insensitive), email format, and the
        password hashed into ``_hashed_password``."""
        username, email = fields.get("username"), fields.get("email")
        if object_id is None and not fields.get("authData"):
            if not isinstance(username, str) or not username:
                raise ParseError(errors.USERNAME_MISSING, "bad or missing username")
            if not isinstance(fields.get("password"), str) or not fields["password"]:
                raise ParseError(errors.PASSWORD_MISSING, "password is required")
        if isinstance(username, str):
            await users.ensure_unique(self, schema, "username", username, object_id, errors.USERNAME_TAKEN,
                                      "Account already exists for this username.")
        if email is not None and not isinstance(email, Op):
            users.validate_email(email)
            await users.ensure_unique(self, schema, "email", email, object_id, errors.EMAIL_TAKEN,
                                      "Account already exists for this email address.")
        if "password" in fields:
            password = fields.pop("password")
            if not isinstance(password, str) or not password:
                raise ParseError(errors.PASSWORD_MISSING, "password is required")
            fields["_hashed_password"] = await users.hash_password(password)

    async def _prepare_create(self, auth: Auth, class_name: str, body: Any
                              ) -> tuple[ClassSchema, StoredObject, dict[str, list[str]], dict[str, Any]]:
        """Validate a create and build the stored object, its relation rows and the response."""
        if not isinstance(body, dict):
            raise ParseError(errors.INVALID_JSON, "This request body is not a JSON object.")
        enforce_class_security("create", class_name, auth)
        schema = await self.schemas.get(class_name)
        if (schema is None and not auth.master and not self.options.allow_client_class_creation
                and class_name not in SYSTEM_CLASSES):  # parse-server lets clients start system classes
            raise _permission_denied()
        check_class_name(class_name)
        fields, acl = self._prepare_fields(class_name, body, creating=True, auth=auth)
        if schema is None:
            schema = await self.schemas.create(class_name)
        self._check_clp(schema, "create", auth)
        object_id = new_object_id()
        if class_name == "_User":
            await self._user_fields(schema, fields, None)
            if isinstance(fields.get("email"), str):
                fields.update(self.account.email_verify_fields())
            if acl is None:
                acl = {object_id: {"read": True, "write": True}}
                if not self.options.enforce_private_users:
                    acl["*"] = {"read": True}
        elif class_name == "_Role":
            users.validate_role_name(fields.get("name"))
            if acl is None:
                raise ParseError(errors.INCORRECT_TYPE, "ACL is required.")
        internal = {k: fields.pop(k) for k in list(fields) if k.startswith("_")}
        schema = await self._typed_schema(auth, schema, fields)

        now = codec.now_iso()
        stored: StoredObject = {"objectId": object_id, "createdAt": now, "updatedAt": now, **internal}
        relations: dict[str, list[str]] = {}
        response: dict[str, Any] = {"objectId": object_id, "createdAt": now}
        for name, value in fields.items():
            if isinstance(value, RelationOp):
                relations[name] = [p["objectId"] for p in value.adds]
                continue
            if isinstance(value, Op):
                echoed = type(value).__name__ in _ECHOED_OPS
                value = value.initial_value()
                if value is not None and echoed:
                    response[name] = value
            if value is not None:
                stored[name] = value
        if acl is not None:
            stored["_rperm"], stored["_wperm"] = codec.acl_to_perms(acl)
        return schema, stored, relations, response

    async def _after_create(self, auth: Auth, class_name: str, stored: StoredObject,
                            response: dict[str, Any]) -> None:
        if class_name == "_User" and isinstance(stored.get("email"), str):
            await self.account.send_verification_email(stored)
            if not self.account.signup_needs_session():
                return
        if class_name == "_User" and not auth.master:
            provider = ",".join(stored.get("authData") or {}) or None
            response["sessionToken"] = await self.sessions.create(
                stored["objectId"], auth.installation_id, "login" if provider else "signup", provider or "password")
        if class_name == "_Role":
            self.sessions.clear_role_cache()

    async def _client_session(self, auth: Auth) -> tuple[str, dict[str, Any]]:
        """A client creating a ``_Session`` gets a new session of its own user, whatever the body says
        (as parse-server: the token, user and createdWith are the server's)."""
        if not auth.user_id:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Session token required.")
        token = await self.sessions.create(auth.user_id, auth.installation_id, "create", None)
        schema = await self.schemas.get("_Session")
        assert schema is not None
        row = (await self.storage.find(schema, query.Compare("sessionToken", "eq", token), limit=1))[0]
        return row["objectId"], {k: v for k, v in self.to_wire(schema, row, auth).items() if k != "updatedAt"}

    async def create(self, auth: Auth, class_name: str, body: Any) -> tuple[str, dict[str, Any]]:
        if self.cloud is not None:  # Cloud Code: beforeSave/afterSave (parsectl.cloud)
            return await self.cloud.create(self, auth, class_name, body, self._create)
        return await self._create(auth, class_name, body)

    async def _create(self, auth: Auth, class_name: str, body: Any) -> tuple[str, dict[str, Any]]:
        if class_name == "_Session" and not auth.master:
            return await self._client_session(auth)
        schema, stored, relations, response = await self._prepare_create(auth, class_name, body)
        try:
            await self.storage.insert(schema, stored, relations)
        except ParseError as exc:
            raise _duplicate_user_error(class_name, exc) from None
        await self._after_create(auth, class_name, stored, response)
        return stored["objectId"], response

    async def signup(self, auth: Auth, body: Any) -> tuple[int, str, dict[str, Any]]:
        """``POST /users``: a sign-up, or with ``authData`` of an existing account a log-in (200)."""
        auth_data = body.get("authData") if isinstance(body, dict) else None
        if auth_data is not None:
            users.validate_auth_data(auth_data, self._auth_providers())
            await self.auth_providers.validate(auth_data)
            if not users.provided_auth_data(auth_data):
                body = {k: v for k, v in body.items() if k != "authData"}
                object_id, response = await self.create(auth, "_User", body)
                return 201, object_id, response
            found = await users.users_with_auth_data(self, auth_data)
            if len(found) > 1:
                raise ParseError(208, "this auth is already used")
            if found:
                stored = found[0]
                schema = await self.schemas.get("_User")
                assert schema is not None
                user = self.to_wire(schema, stored, Auth(user_id=stored["objectId"]))
                user["authDataResponse"] = {}
                if not auth.master:
                    provider = ",".join(p for p, d in auth_data.items() if d is not None)
                    user["sessionToken"] = await self.sessions.create(stored["objectId"], auth.installation_id,
                                                                      "login", provider)
                return 200, stored["objectId"], user
            body = {**body}
            if not body.get("username"):
                body["username"] = users.random_username()
                generated = True
            else:
                generated = False
            object_id, response = await self.create(auth, "_User", body)
            if generated:
                response["username"] = body["username"]
            response["authDataResponse"] = {}
            return 201, object_id, response
        object_id, response = await self.create(auth, "_User", body)
        return 201, object_id, response

    async def save_installation(self, auth: Auth, body: Any) -> tuple[int, str, dict[str, Any]]:
        """``POST /installations``: devices register by installationId (or deviceToken); a known one is updated
        rather than duplicated. Ids are lower-cased as parse-server stores them."""
        if not isinstance(body, dict):
            raise ParseError(errors.INVALID_JSON, "This request body is not a JSON object.")
        body = dict(body)
        if not body.get("installationId") and auth.installation_id:
            body["installationId"] = auth.installation_id
        if isinstance(body.get("installationId"), str):
            body["installationId"] = body["installationId"].lower()
        if isinstance(body.get("deviceToken"), str) and body.get("deviceType") == "ios":
            body["deviceToken"] = body["deviceToken"].lower()
        if not body.get("installationId") and not body.get("deviceToken"):
            raise ParseError(135, "at least one ID field (deviceToken, installationId) must be specified in this "
                                  "operation")
        schema = await self.schemas.get("_Installation")
        existing: list[StoredObject] = []
        if schema is not None:
            clauses = [query.Compare(k, "eq", body[k]) for k in ("installationId", "deviceToken") if body.get(k)]
            existing = await self.storage.find(schema, query.Or(clauses), limit=1)
        if existing:
            object_id = existing[0]["objectId"]
            changes = {k: v for k, v in body.items() if k not in ("installationId", "deviceType")}
            response = await self.update(Auth(master=True), "_Installation", object_id, changes)
            return 200, object_id, {"objectId": object_id, **response}
        if not body.get("deviceType"):
            raise ParseError(135, "deviceType must be specified in this operation")
        object_id, response = await self.create(auth, "_Installation", body)
        return 201, object_id, response

    def _auth_providers(self) -> set[str]:
        return self.auth_providers.names()

    async def create_many(self, auth: Auth, class_name: str, bodies: list[Any]
                          ) -> list[dict[str, Any] | ParseError]:
        """Several creates in one class (a /batch of creates): each is checked on its own, and those
        that pass are written with one statement; the answer for each is its response or its error."""
        if class_name in ("_User", "_Role", "_Session") or (  # these need per-object follow-ups, as
                self.cloud is not None and self.cloud.saves(class_name)):  # do Cloud Code save triggers
            results: list[dict[str, Any] | ParseError] = []
            for body in bodies:
                try:
                    results.append((await self.create(auth, class_name, body))[1])
                except ParseError as exc:
                    results.append(exc)
            return results
        results = []
        ready: list[tuple[int, StoredObject]] = []
        schema: ClassSchema | None = None
        for body in bodies:
            try:
                schema, stored, relations, response = await self._prepare_create(auth, class_name, body)
            except ParseError as exc:
                results.append(exc)
                continue
            results.append(response)
            if relations:
                try:
                    await self.storage.insert(schema, stored, relations)
                except ParseError as exc:
                    results[-1] = exc
            else:
                ready.append((len(results) - 1, stored))
        if ready and schema is not None:
            schema = self.schemas.cached(class_name) or schema
            outcomes = await self.storage.insert_batch(schema, [stored for _, stored in ready])
            for (index, _), error in zip(ready, outcomes, strict=True):
                if error is not None:
                    results[index] = error
        return results

    async def update(self, auth: Auth, class_name: str, object_id: str, body: Any) -> dict[str, Any]:
        if self.cloud is not None:  # Cloud Code: beforeSave/afterSave (parsectl.cloud)
            return await self.cloud.update(self, auth, class_name, object_id, body, self._update)
        return await self._update(auth, class_name, object_id, body)

    async def _update(self, auth: Auth, class_name: str, object_id: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ParseError(errors.INVALID_JSON, "This request body is not a JSON object.")
        if body.get("objectId") not in (None, object_id):
            raise ParseError(errors.INVALID_KEY_NAME, "objectId is an invalid field name.")
        if class_name == "_User" and not auth.master and not auth.user_id:
            raise ParseError(errors.SESSION_MISSING, f"Cannot modify user {object_id}.")
        fields, acl = self._prepare_fields(class_name, body, creating=False, auth=auth)
        schema, constraint = await self._schema_for(auth, class_name, "update")
        if schema is None:
            raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
        changing_password = class_name == "_User" and "password" in fields
        if class_name == "_User" and ("password" in fields or "email" in fields):
            fields["_perishable_token"] = None  # a pending reset link dies with the old password or email
            fields["_perishable_token_expires_at"] = None
            if isinstance(fields.get("email"), str):
                fields.update(self.account.email_verify_fields())
        if class_name == "_User":
            await self._user_fields(schema, fields, object_id)
            if "authData" in fields:
                users.validate_auth_data(fields["authData"], self._auth_providers())
                await self.auth_providers.validate(fields["authData"])
                others = [u for u in await users.users_with_auth_data(self, fields["authData"])
                          if u["objectId"] != object_id]
                if others:
                    raise ParseError(208, "this auth is already used")
                # linking adds a provider and unlinking ({"provider": null}) removes one; the rest stay
                current = await self.storage.find(schema, query.Compare("objectId", "eq", object_id), limit=1)
                merged = dict((current[0].get("authData") or {}) if current else {})
                for provider, data in fields["authData"].items():
                    if data is None:
                        merged.pop(provider, None)
                    else:
                        merged[provider] = data
                fields["authData"] = merged or None
        if class_name == "_Role":
            if "name" in fields:
                if not auth.master and not await self.storage.find(  # the ACL answers first, as parse-server
                        schema, self._write_filter(auth, query.Compare("objectId", "eq", object_id)), limit=1):
                    raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
                raise ParseError(136, "A role's name can only be set before it has been saved.")
            self.sessions.clear_role_cache()
        if class_name == "_User" and acl is not None and not auth.master and auth.user_id == object_id:
            acl[object_id] = {"read": True, "write": True}  # users cannot lock themselves out of their record
        internal = {k: fields.pop(k) for k in list(fields) if k.startswith("_")}
        schema = await self._typed_schema(auth, schema, fields)
        now = codec.now_iso()
        changes: dict[str, Any] = {**fields, **internal}
        changes["updatedAt"] = now
        if acl is not None:
            changes["_rperm"], changes["_wperm"] = codec.acl_to_perms(acl)
        where = self._write_filter(auth, self._narrow(query.Compare("objectId", "eq", object_id), constraint))
        try:
            updated = await self.storage.update(schema, where, changes)
        except ParseError as exc:
            raise _duplicate_user_error(class_name, exc) from None
        if not updated:
            if class_name == "_User" and not auth.master:
                raise ParseError(errors.SESSION_MISSING, "Insufficient auth.")
            raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
        obj = updated[0]
        response: dict[str, Any] = {"updatedAt": now}
        for name, value in fields.items():
            if isinstance(value, Op) and type(value).__name__ in _ECHOED_OPS and obj.get(name) is not None:
                response[name] = obj[name]
        if changing_password:
            # as parse-server: the user's sessions end; a user changing their own password gets a new one
            await self.sessions.revoke_all(object_id)
            if not auth.master:
                response["sessionToken"] = await self.sessions.create(object_id, auth.installation_id, "login")
        return response

    async def delete(self, auth: Auth, class_name: str, object_id: str) -> dict[str, Any]:
        if self.cloud is not None:  # Cloud Code: beforeDelete/afterDelete (parsectl.cloud)
            return await self.cloud.delete(self, auth, class_name, object_id, self._delete)
        return await self._delete(auth, class_name, object_id)

    async def _delete(self, auth: Auth, class_name: str, object_id: str) -> dict[str, Any]:
        if class_name == "_User" and not auth.master and not auth.user_id:
            raise ParseError(errors.SESSION_MISSING, "Insufficient auth to delete user")
        schema, constraint = await self._schema_for(auth, class_name, "delete")
        if schema is None:
            raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
        where = self._write_filter(auth, self._narrow(query.Compare("objectId", "eq", object_id), constraint))
        if not await self.storage.delete(schema, where):
            if class_name == "_User" and not auth.master:
                raise ParseError(errors.SESSION_MISSING, "Insufficient auth.")
            raise ParseError(errors.OBJECT_NOT_FOUND, "Object not found.")
        if class_name == "_User":
            await self.sessions.revoke_all(object_id)
        if class_name == "_Role":
            self.sessions.clear_role_cache()
        return {}


def _duplicate_user_error(class_name: str, exc: ParseError) -> ParseError:
    """A unique-index refusal on _User (two sign-ups racing for one username) as parse-server answers it."""
    if exc.code == errors.DUPLICATE_VALUE and class_name == "_User":
        return ParseError(errors.USERNAME_TAKEN, "Account already exists for this username.")
    return exc


# --- include and projection helpers ---------------------------------------------------------------------


def _include_paths(opts: FindOptions, schema: ClassSchema) -> list[str]:
    paths: list[str] = []
    requested = list(opts.include)
    for key in opts.keys or []:
        if "." in key:
            requested.append(key.rsplit(".", 1)[0])
    if opts.include_all:
        requested += [n for n, t in schema.fields.items() if t["type"] in ("Pointer", "Array")]
    for path in requested:
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix and prefix not in paths:
                paths.append(prefix)
    paths.sort(key=lambda p: p.count("."))
    return paths


def _find_pointers(value: Any, path: list[str]) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [p for item in value for p in _find_pointers(item, path)]
    if not isinstance(value, dict):
        return []
    if not path:
        return [value] if codec.is_pointer(value) else []
    sub = value.get(path[0])
    if sub is None:
        return []
    return _find_pointers(sub, path[1:])


_GONE = object()


def _replace_pointers(obj: dict[str, Any], path: list[str], replace: dict[str, dict[str, Any]]) -> None:
    def swap(value: Any) -> Any:
        if codec.is_pointer(value):
            return replace.get(value["objectId"], _GONE)
        return value

    head, rest = path[0], path[1:]
    if head not in obj:
        return
    value = obj[head]
    if not rest:
        if isinstance(value, list):
            obj[head] = [v for v in (swap(item) for item in value) if v is not _GONE]
        else:
            new = swap(value)
            if new is _GONE:
                del obj[head]
            else:
                obj[head] = new
        return
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            _replace_pointers(item, rest, replace)


def _sub_keys(keys: list[str] | None, path: list[str]) -> list[str] | None:
    if not keys:
        return None
    prefix = ".".join(path) + "."
    sub = [k[len(prefix):] for k in keys if k.startswith(prefix)]
    return sub or None


def _project(obj: dict[str, Any], keys: list[str] | None, exclude: list[str]) -> dict[str, Any]:
    score = obj.pop("$score", None)  # a $text query's score: returned as "score" when keys has $score
    if keys is not None:
        wanted = {k.split(".", 1)[0] for k in keys}
        obj = {k: v for k, v in obj.items() if k in wanted or k in _ALWAYS_KEYS or k in ("__type", "className")}
    if exclude:
        drop = {k for k in exclude if "." not in k and k not in _ALWAYS_KEYS}
        obj = {k: v for k, v in obj.items() if k not in drop}
    if score is not None and keys is not None and "$score" in keys:
        obj["score"] = score
    return obj


_shapes: dict[int, tuple[ClassSchema, int, tuple[str, ...], tuple[tuple[str, str], ...]]] = {}


def _wire_shape(schema: ClassSchema) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The class's File fields (their URLs are filled in) and Relation fields (always shown), computed once
    per schema object and again when it gains fields."""
    cached = _shapes.get(id(schema))
    if cached is not None and cached[0] is schema and cached[1] == len(schema.fields):
        return cached[2], cached[3]
    files = tuple(name for name, t in schema.fields.items() if t["type"] == "File")
    relations = tuple((name, t["targetClass"]) for name, t in schema.fields.items() if t["type"] == "Relation")
    if len(_shapes) > 4096:
        _shapes.clear()
    _shapes[id(schema)] = (schema, len(schema.fields), files, relations)
    return files, relations
