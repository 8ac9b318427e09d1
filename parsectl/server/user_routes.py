"""The user, session and role routes: sign-up, log-in, log-out, me, loginAs, verifyPassword, sessions,
and the ``/users``, ``/roles``, ``/sessions``, ``/installations`` aliases of their classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parsectl.model import codec, errors, query
from parsectl.model.errors import ParseError
from parsectl.model.query import GET_PARAMS
from parsectl.server import users
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.server.routes import Request, Router

_ID = r"(?P<objectId>[^/]+)"
ALIASES = {"users": "_User", "roles": "_Role", "sessions": "_Session", "installations": "_Installation"}


class UserRoutes:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.rest = router.rest

    def register(self) -> None:
        add = self.router.add
        add("POST", r"/users", self.signup)
        add("GET", r"/users/me", self.me)
        add("GET", r"/login", self.login)
        add("POST", r"/login", self.login)
        add("POST", r"/logout", self.logout)
        add("GET", r"/verifyPassword", self.verify_password)
        add("POST", r"/verifyPassword", self.verify_password)
        add("POST", r"/loginAs", self.login_as)
        add("GET", r"/sessions/me", self.session_me)
        add("POST", r"/upgradeToRevocableSession", self.upgrade_session)
        add("POST", r"/installations", self.save_installation)
        add("POST", r"/requestPasswordReset", self.request_password_reset)
        add("POST", r"/verificationEmailRequest", self.verification_email_request)
        for alias, class_name in ALIASES.items():
            if alias not in ("users", "installations"):
                add("POST", rf"/{alias}", self._aliased(self.router.create, class_name))
            add("GET", rf"/{alias}", self._aliased(self.router.find, class_name))
            add("GET", rf"/{alias}/{_ID}", self._aliased(self.get_user if alias == "users" else self.router.get,
                                                         class_name))
            add("PUT", rf"/{alias}/{_ID}", self._aliased(self.router.update, class_name))
            add("DELETE", rf"/{alias}/{_ID}", self._aliased(self.router.delete, class_name))

    @staticmethod
    def _aliased(handler: Any, class_name: str) -> Any:
        async def run(request: Request, args: dict[str, str]) -> Response:
            return await handler(request, {**args, "className": class_name})

        run.__name__ = getattr(handler, "__name__", "aliased")
        return run

    # --- sign-up and log-in -------------------------------------------------------------------------------
    async def signup(self, request: Request, args: dict[str, str]) -> Response:
        status, object_id, body = await self.rest.signup(request.auth, request.body)
        if status == 200:
            return Response.json(body)
        return Response.json(body, 201, [(b"location", f"{request.base_url}/users/{object_id}".encode())])

    async def request_password_reset(self, request: Request, args: dict[str, str]) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        return Response.json(await self.rest.account.request_password_reset(body.get("email"), body.get("token")))

    async def verification_email_request(self, request: Request, args: dict[str, str]) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        return Response.json(await self.rest.account.verification_email_request(body.get("email")))

    async def save_installation(self, request: Request, args: dict[str, str]) -> Response:
        status, object_id, body = await self.rest.save_installation(request.auth, request.body)
        if status == 200:
            return Response.json(body)
        return Response.json(body, 201, [(b"location", f"{request.base_url}/installations/{object_id}".encode())])

    async def _user_from_credentials(self, request: Request) -> dict[str, Any]:
        payload = request.body if isinstance(request.body, dict) else {}
        if not payload.get("username") and not payload.get("email") and request.params:
            payload = request.params
        username, email, password = payload.get("username"), payload.get("email"), payload.get("password")
        if not username and not email:
            raise ParseError(errors.USERNAME_MISSING, "username/email is required.")
        if not password:
            raise ParseError(errors.PASSWORD_MISSING, "password is required.")
        invalid = ParseError(errors.OBJECT_NOT_FOUND, "Invalid username/password.")
        if not isinstance(password, str) or (email and not isinstance(email, str)) or (
                username and not isinstance(username, str)):
            raise invalid
        stored = await users.find_user_for_login(self.rest, username, email)
        if stored is None:
            raise invalid
        password_ok = await users.check_password(password, stored.get("_hashed_password"))
        await self.rest.account.handle_login_attempt(stored, password_ok)
        if not password_ok:
            raise invalid
        # a user whose ACL is empty ({}) is locked out, except for the master key
        if not request.auth.master and stored.get("_rperm") == [] and stored.get("_wperm") == []:
            raise invalid
        self.rest.account.check_login_allowed(stored, master=request.auth.master,
                                              ignore_email_verification=bool(payload.get("ignoreEmailVerification")))
        return stored

    async def _user_json(self, stored: dict[str, Any], request: Request) -> dict[str, Any]:
        schema = await self.rest.schemas.get("_User")
        assert schema is not None
        auth = request.auth
        viewer = type(auth)(master=True)  # the user sees all of their own record
        return self.rest.to_wire(schema, stored, viewer if auth.master else _self(auth, stored))

    async def login(self, request: Request, args: dict[str, str]) -> Response:
        stored = await self._user_from_credentials(request)
        user = await self._user_json(stored, request)
        if self.rest.cloud is not None:  # Cloud Code: beforeLogin (parsectl.cloud)
            await self.rest.cloud.before_login(self.rest, request.auth, user)
        user["sessionToken"] = await self.rest.sessions.create(stored["objectId"], request.auth.installation_id,
                                                               "login")
        if self.rest.cloud is not None:  # Cloud Code: afterLogin
            await self.rest.cloud.after_login(self.rest, request.auth, user)
        return Response.json(user)

    async def verify_password(self, request: Request, args: dict[str, str]) -> Response:
        stored = await self._user_from_credentials(request)
        return Response.json(await self._user_json(stored, request))

    async def login_as(self, request: Request, args: dict[str, str]) -> Response:
        if not request.auth.master:
            raise ParseError(errors.OPERATION_FORBIDDEN, "master key is required")
        payload = request.body if isinstance(request.body, dict) and request.body else request.params
        user_id = payload.get("userId") if isinstance(payload, dict) else None
        if not user_id:
            raise ParseError(162, "userId must not be empty, null, or undefined")
        schema = await self.rest.schemas.get("_User")
        rows = await self.rest.storage.find(schema, query.Compare("objectId", "eq", user_id), limit=1) if schema else []
        if not rows:
            raise ParseError(errors.OBJECT_NOT_FOUND, "user not found")
        user = await self._user_json(rows[0], request)
        user["sessionToken"] = await self.rest.sessions.create(user_id, request.auth.installation_id, "login",
                                                               "masterkey")
        return Response.json(user)

    async def me(self, request: Request, args: dict[str, str]) -> Response:
        auth = request.auth
        if not auth.session_token:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Invalid session token")
        if auth.master:  # the master key skips session resolution; /users/me still follows the token
            await self.rest.sessions.resolve(auth)
        schema = await self.rest.schemas.get("_User")
        rows = await self.rest.storage.find(schema, query.Compare("objectId", "eq", auth.user_id),
                                            limit=1) if schema and auth.user_id else []
        if not rows:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Invalid session token")
        user = self.rest.to_wire(schema, rows[0], _self(auth, rows[0]))
        user["sessionToken"] = auth.session_token
        return Response.json(user)

    async def get_user(self, request: Request, args: dict[str, str]) -> Response:
        for name in request.params:
            if name not in GET_PARAMS:
                raise ParseError(errors.INVALID_QUERY, "Improper encode of parameter")
        opts = query.parse_find_options(request.params, master=request.auth.master, allowed=GET_PARAMS)
        user = await self.rest.get(request.auth, "_User", args["objectId"], opts)
        if request.auth.user_id == args["objectId"] and request.auth.session_token:
            user["sessionToken"] = request.auth.session_token
        return Response.json(user)

    async def logout(self, request: Request, args: dict[str, str]) -> Response:
        token = request.auth.session_token
        if token:
            session = await self.rest.cloud.logout_session(self.rest, token) if self.rest.cloud else None  # Cloud Code
            schema = await self.rest.schemas.get("_Session")
            if schema is not None:
                deleted = await self.rest.storage.delete(schema, query.Compare("sessionToken", "eq", token))
                if not deleted:
                    raise ParseError(errors.OBJECT_NOT_FOUND, "Session token not found.")
            if self.rest.cloud is not None:  # Cloud Code: afterLogout
                await self.rest.cloud.after_logout(self.rest, request.auth, session)
        return Response.json({})

    async def upgrade_session(self, request: Request, args: dict[str, str]) -> Response:
        return Response.json(await self.rest.sessions.upgrade(request.auth))

    async def session_me(self, request: Request, args: dict[str, str]) -> Response:
        auth = request.auth
        if not auth.session_token:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Session token required.")
        schema = await self.rest.schemas.get("_Session")
        rows = await self.rest.storage.find(schema, query.Compare("sessionToken", "eq", auth.session_token),
                                            limit=1) if schema else []
        if not rows:
            raise ParseError(errors.INVALID_SESSION_TOKEN, "Session token not found.")
        return Response.json(self.rest.to_wire(schema, rows[0], _self(auth, rows[0])))


def _self(auth: Any, stored: dict[str, Any]) -> Any:
    """The auth of the user owning ``stored`` (a user record or a session), for reading it in full."""
    owner = stored.get("user")
    user_id = owner["objectId"] if codec.is_pointer(owner) else stored.get("objectId")
    return type(auth)(user_id=user_id, roles=list(auth.roles), session_token=auth.session_token)


__all__ = ["ALIASES", "UserRoutes"]
