"""The REST routes: thin handlers that parse a request and call :class:`~parsectl.server.rest.RestService`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from parsectl.model import errors, query
from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.audiences_api import register as register_audience_routes
from parsectl.server.auth import Auth
from parsectl.server.config_api import register_routes
from parsectl.server.functions_api import FunctionsAPI
from parsectl.server.hooks_api import register_hook_routes
from parsectl.server.http import Response
from parsectl.server.jobs_api import register_routes as register_job_schedule_routes
from parsectl.server.rest import RestService
from parsectl.server.schemas_api import SchemasAPI
from parsectl.server.user_routes import UserRoutes


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    body: Any
    auth: Auth
    base_url: str
    mount_prefix: str
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Request, dict[str, str]], Awaitable[Response]]

_CLASS = r"(?P<className>[^/]+)"
_ID = r"(?P<objectId>[^/]+)"


class Router:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest
        self.schemas = SchemasAPI(rest.schemas, rest.storage)
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.add("GET", rf"/classes/{_CLASS}", self.find)
        self.add("POST", rf"/classes/{_CLASS}", self.create)
        self.add("GET", rf"/classes/{_CLASS}/{_ID}", self.get)
        self.add("PUT", rf"/classes/{_CLASS}/{_ID}", self.update)
        self.add("DELETE", rf"/classes/{_CLASS}/{_ID}", self.delete)
        UserRoutes(self).register()
        self.add("GET", r"/serverInfo", self.server_info)
        self.add("GET", r"/schemas", self.schemas_all)
        self.add("GET", rf"/schemas/{_CLASS}", self.schemas_one)
        self.add("POST", r"/schemas", self.schemas_create)
        self.add("POST", rf"/schemas/{_CLASS}", self.schemas_create)
        self.add("PUT", rf"/schemas/{_CLASS}", self.schemas_update)
        self.add("DELETE", rf"/schemas/{_CLASS}", self.schemas_delete)
        register_routes(self)
        register_job_schedule_routes(self)
        register_hook_routes(self)
        register_audience_routes(self)
        self.add("POST", r"/functions/(?P<functionName>[^/]+)", FunctionsAPI(rest).run_function)
        self.add("POST", r"/jobs/(?P<jobName>[^/]+)", FunctionsAPI(rest).run_job)
        self.add("POST", r"/jobs", FunctionsAPI(rest).run_job)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route_method, pattern, handler in self.routes:
            if route_method != method:
                continue
            m = pattern.match(path)
            if m:
                return handler, m.groupdict()
        return None

    # --- classes --------------------------------------------------------------------------------------
    def _find_options(self, request: Request, allowed: frozenset[str] = query.FIND_PARAMS) -> query.FindOptions:
        options = self.rest.options
        return query.parse_find_options(request.params, master=request.auth.master,
                                        default_limit=options.default_limit, max_limit=options.max_limit,
                                        allowed=allowed)

    async def find(self, request: Request, args: dict[str, str]) -> Response:
        opts = self._find_options(request)
        return Response.json(await self.rest.find(request.auth, args["className"], opts))

    async def get(self, request: Request, args: dict[str, str]) -> Response:
        for name in request.params:
            if name not in query.GET_PARAMS:
                raise ParseError(errors.INVALID_QUERY, "Improper encode of parameter")
        opts = self._find_options(request, query.GET_PARAMS)
        return Response.json(await self.rest.get(request.auth, args["className"], args["objectId"], opts))

    async def create(self, request: Request, args: dict[str, str]) -> Response:
        class_name = args["className"]
        object_id, body = await self.rest.create(request.auth, class_name, request.body)
        location = f"{request.base_url}/classes/{class_name}/{object_id}"
        return Response.json(body, 201, [(b"location", location.encode())])

    async def update(self, request: Request, args: dict[str, str]) -> Response:
        body = await self.rest.update(request.auth, args["className"], args["objectId"], request.body)
        return Response.json(body)

    async def delete(self, request: Request, args: dict[str, str]) -> Response:
        return Response.json(await self.rest.delete(request.auth, args["className"], args["objectId"]))

    # --- misc -----------------------------------------------------------------------------------------
    async def server_info(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json({
            "features": {
                "globalConfig": {"create": True, "read": True, "update": True, "delete": True},
                "hooks": {"create": True, "read": True, "update": True, "delete": True},
                "cloudCode": {"jobs": True},
                "logs": {"level": False, "size": False, "order": False, "until": False, "from": False},
                "push": self._push_features(),
                "schemas": {"addField": True, "removeField": True, "addClass": True, "removeClass": True,
                            "clearAllDataFromClass": True, "exportClass": False, "editClassLevelPermissions": True},
                "settings": {"securityCheck": False},
            },
            "parseServerVersion": "9.10.0",
        })

    def _push_features(self) -> dict[str, bool]:
        push = getattr(self.rest, "push", None)
        configured = bool(push is not None and push.has_push)
        # as parse-server: pushAudiences and localization are true whatever the configuration
        return {"immediatePush": configured, "scheduledPush": bool(configured and push.scheduled_push),
                "storedPushData": configured, "pushAudiences": True, "localization": True}

    # --- schemas --------------------------------------------------------------------------------------
    async def schemas_all(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json(await self.schemas.all())

    async def schemas_one(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json(await self.schemas.one(args["className"]))

    async def schemas_create(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json(await self.schemas.create(args.get("className"), request.body))

    async def schemas_update(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json(await self.schemas.update(args["className"], request.body))

    async def schemas_delete(self, request: Request, args: dict[str, str]) -> Response:
        require_master(request)
        return Response.json(await self.schemas.delete(args["className"]))


def require_master(request: Request) -> None:
    if not request.auth.master:
        raise HTTPError(403, "Permission denied")


# --- batch --------------------------------------------------------------------------------------------


async def run_batch(router: Router, request: Request, extra_prefixes: list[str]) -> Response:
    body = request.body if isinstance(request.body, dict) else {}
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise ParseError(errors.INVALID_JSON, "requests must be an array")
    prefixes = [p for p in [request.mount_prefix, *extra_prefixes] if p is not None]
    planned: list[tuple[Handler, dict[str, str], Request]] = []
    for sub in requests:
        if not isinstance(sub, dict) or not isinstance(sub.get("path"), str) or not isinstance(
            sub.get("method"), str
        ):
            raise ParseError(errors.INVALID_JSON, "cannot route batch path " + str(
                sub.get("path") if isinstance(sub, dict) else sub))
        path = sub["path"]
        for prefix in prefixes:
            if path.startswith(prefix + "/"):
                path = "/" + path[len(prefix):].strip("/")
                break
        else:
            raise ParseError(errors.INVALID_JSON, "cannot route batch path " + path)
        method = sub["method"].upper()
        matched = router.match(method, path)
        if matched is None:
            raise ParseError(errors.INVALID_JSON, f"cannot route {method} {path}")
        sub_body = sub.get("body")
        if sub_body is None:
            sub_body = {}
        params = sub_body if method == "GET" and isinstance(sub_body, dict) else {}
        planned.append((matched[0], matched[1], Request(method, path, params, sub_body, request.auth,
                                                        request.base_url, request.mount_prefix)))
    if body.get("transaction") is True:
        return await _run_transaction(router, planned)

    results: list[dict[str, Any] | None] = [None] * len(planned)

    async def one_at(index: int) -> None:
        results[index] = await _batch_one(*planned[index])

    async def creates_in(class_name: str, indexes: list[int]) -> None:
        outcomes = await router.rest.create_many(request.auth, class_name, [planned[i][2].body for i in indexes])
        for index, outcome in zip(indexes, outcomes, strict=True):
            results[index] = {"error": outcome.to_json()} if isinstance(outcome, ParseError) else {"success": outcome}

    async def run_segment(indexes: list[int]) -> None:
        creates: dict[str, list[int]] = {}
        others: list[int] = []
        for index in indexes:
            handler, args, _ = planned[index]
            if handler == router.create:
                creates.setdefault(args["className"], []).append(index)
            else:
                others.append(index)
        await asyncio.gather(*(creates_in(c, ix) if len(ix) > 1 else one_at(ix[0]) for c, ix in creates.items()),
                             *(one_at(i) for i in others))

    # Sub-requests run concurrently, as parse-server runs them, except that one touching an object an
    # earlier sub-request touched, or a query, waits for what comes before it: a batch that updates then
    # reads an object sees its own write. Creates of one class are written together.
    segment: list[int] = []
    touched: set[str] = set()
    for index, (handler, args, _) in enumerate(planned):
        key = f"{args.get('className')}/{args['objectId']}" if "objectId" in args else None
        ordered = handler == router.find or (key is not None and key in touched)
        if ordered and segment:
            await run_segment(segment)
            segment, touched = [], set()
        segment.append(index)
        if key is not None:
            touched.add(key)
        if handler == router.find:
            await run_segment(segment)
            segment, touched = [], set()
    if segment:
        await run_segment(segment)
    return Response.json(results)


async def _batch_one(handler: Handler, args: dict[str, str], sub_request: Request) -> dict[str, Any]:
    try:
        response = await handler(sub_request, args)
        return {"success": response.data}
    except ParseError as exc:
        return {"error": exc.to_json()}
    except HTTPError as exc:
        return {"error": {"code": errors.OPERATION_FORBIDDEN, "error": exc.message}}


class _Rollback(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error


async def _run_transaction(router: Router, planned: list[tuple[Handler, dict[str, str], Request]]) -> Response:
    """``{"transaction": true}``: the sub-requests run in order in one database transaction; all are written
    or none. parse-server 9.10 answers a failed transaction with a bare 500; parsectl answers 400 with the
    first failing sub-request's ``{code, error}``."""
    results: list[dict[str, Any]] = []
    try:
        async with router.rest.storage.transaction():
            for handler, args, sub_request in planned:
                outcome = await _batch_one(handler, args, sub_request)
                if "error" in outcome:
                    raise _Rollback(outcome["error"])
                results.append(outcome)
    except _Rollback as rollback:
        await router.rest.schemas.load()  # a class or field added inside the transaction is gone again
        raise ParseError(rollback.error.get("code", errors.INTERNAL_SERVER_ERROR), rollback.error.get("error")) \
            from None
    return Response.json(results)
