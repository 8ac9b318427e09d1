"""Running Cloud Code: the request object, validators, timeouts, errors, and the hooks the REST service calls.

:class:`CloudRuntime` is what ``RestService.cloud`` holds when a ``cloud`` option is set (None otherwise,
and then no hook costs anything). Errors follow parse-server: a raised :class:`ParseError` reaches the client
as is; any other exception becomes 141 (SCRIPT_FAILED) with its message; validator failures are 142.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from parsectl.cloud.registry import (
    AFTER_DELETE,
    AFTER_FIND,
    AFTER_LOGIN,
    AFTER_LOGOUT,
    AFTER_SAVE,
    BEFORE_DELETE,
    BEFORE_FIND,
    BEFORE_LOGIN,
    BEFORE_SAVE,
    FILE_CLASS,
    Cloud,
    CloudFile,
    Definition,
    Validator,
)
from parsectl.model import codec, query
from parsectl.model.errors import ParseError
from parsectl.server.auth import Auth

log = logging.getLogger("parsectl.cloud")

SCRIPT_FAILED = 141
VALIDATION_ERROR = 142
CONNECTION_FAILED = 100
_READ_ONLY_KEYS = ("objectId", "createdAt", "updatedAt", "className")
_JS_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", dict: "object", list: "array"}


class RateLimited(ParseError):
    """A rate-limited call: HTTP 429, as parse-server's rateLimit answers."""

    @property
    def http_status(self) -> int:
        return 429


@dataclass
class _Scope:
    """What Cloud Code sees of the HTTP request it runs in (headers decoded only when asked for)."""

    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    ip: str | None = None
    context: Any = None
    _headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}
        return self._headers


_scope: ContextVar[_Scope | None] = ContextVar("parsectl_cloud_scope", default=None)


class CloudRequest:
    """The ``request`` a handler gets. Objects are dicts in REST form (as the REST API sends them).

    Attributes: ``params``, ``user`` (the caller's ``_User`` as a dict, or None), ``master``,
    ``installation_id``, ``object``, ``original``, ``context``, ``headers``, ``ip``, ``class_name``,
    ``trigger_name``, ``function_name``, ``job_name``, ``job_id``, ``query`` (beforeFind), ``objects``
    (afterFind), ``is_get``, ``count``, ``log``; jobs also have ``message(text)``.
    """

    def __init__(self, **attrs: Any) -> None:
        self.params: dict[str, Any] = {}
        self.user: dict[str, Any] | None = None
        self.master = False
        self.is_read_only = False
        self.installation_id: str | None = None
        self.object: dict[str, Any] | None = None
        self.original: dict[str, Any] | None = None
        self.context: dict[str, Any] = {}
        self.headers: dict[str, str] = {}
        self.ip: str | None = None
        self.class_name: str | None = None
        self.trigger_name: str | None = None
        self.function_name: str | None = None
        self.job_name: str | None = None
        self.job_id: str | None = None
        self.query: CloudQuery | None = None
        self.file: CloudFile | None = None
        self.file_size: int | None = None
        self.content_length: int | None = None
        self.objects: list[dict[str, Any]] | None = None
        self.is_get = False
        self.count = False
        self.log = log
        for name, value in attrs.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        what = self.function_name or self.job_name or f"{self.trigger_name} {self.class_name}"
        return f"<CloudRequest {what}>"


class CloudQuery:
    """The query a beforeFind trigger may narrow: ``where({...})`` / ``equal_to(key, value)`` add
    constraints (ANDed with the client's), and ``limit``, ``skip``, ``include``, ``keys`` can be set."""

    def __init__(self, class_name: str, opts: query.FindOptions) -> None:
        self.class_name = class_name
        self.limit = opts.limit
        self.skip = opts.skip
        self.include = list(opts.include)
        self.keys = list(opts.keys) if opts.keys is not None else None
        self.exclude_keys = list(opts.exclude_keys)
        self.count = opts.count
        self._where: list[dict[str, Any]] = []

    def where(self, constraints: dict[str, Any]) -> CloudQuery:
        if not isinstance(constraints, dict):
            raise TypeError("where() takes a dict of constraints in REST form")
        self._where.append(constraints)
        return self

    def equal_to(self, key: str, value: Any) -> CloudQuery:
        return self.where({key: value})

    # The JS SDK's common constraints, by their Python names (values in REST form).
    def not_equal_to(self, key: str, value: Any) -> CloudQuery:
        return self.where({key: {"$ne": value}})

    def greater_than(self, key: str, value: Any) -> CloudQuery:
        return self.where({key: {"$gt": value}})

    def less_than(self, key: str, value: Any) -> CloudQuery:
        return self.where({key: {"$lt": value}})

    def contained_in(self, key: str, values: list[Any]) -> CloudQuery:
        return self.where({key: {"$in": list(values)}})

    def exists(self, key: str) -> CloudQuery:
        return self.where({key: {"$exists": True}})

    def does_not_exist(self, key: str) -> CloudQuery:
        return self.where({key: {"$exists": False}})

    def _apply(self, opts: query.FindOptions) -> None:
        for constraints in self._where:
            node = query.parse_where(constraints, master=True)
            opts.where = query.And([opts.where, node])
        opts.limit, opts.skip = int(self.limit), int(self.skip)
        opts.include = list(self.include)
        opts.keys = list(self.keys) if self.keys is not None else None
        opts.exclude_keys = list(self.exclude_keys)


class Unserialisable(Exception):
    pass


def encode(value: Any, depth: int = 0) -> Any:
    """A handler's result in REST JSON form (datetimes as Parse Dates, bytes as Bytes)."""
    if depth > 64:
        raise Unserialisable("a value nested too deeply (a cycle?)")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unserialisable(f"a dict key of type {type(key).__name__}")
            out[key] = encode(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [encode(item, depth + 1) for item in value]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return codec.date(codec.format_iso(moment.astimezone(UTC)))
    if isinstance(value, bytes | bytearray):
        return {"__type": "Bytes", "base64": base64.b64encode(bytes(value)).decode()}
    raise Unserialisable(f"a value of type {type(value).__name__}")


def _failure(exc: BaseException, default_code: int) -> ParseError:
    if isinstance(exc, ParseError):
        return exc
    message = str(exc) or type(exc).__name__
    return ParseError(default_code, message)


def _is_op(value: Any) -> bool:
    return isinstance(value, dict) and "__op" in value


def _changes(before: dict[str, Any], after: Any) -> dict[str, Any]:
    """The fields a beforeSave handler changed in ``request.object`` (removed ones as Delete ops)."""
    if not isinstance(after, dict):
        raise ParseError(SCRIPT_FAILED, "request.object must stay a dict of fields")
    out: dict[str, Any] = {}
    for key, value in after.items():
        if key not in _READ_ONLY_KEYS and (key not in before or before[key] != value):
            out[key] = value
    for key in before:
        if key not in after and key not in _READ_ONLY_KEYS:
            out[key] = {"__op": "Delete"}
    return out


class CloudRuntime:
    def __init__(self, cloud: Cloud, webhooks: Any = None) -> None:
        self.cloud = cloud
        self.webhooks = webhooks  # parsectl.cloud.webhooks.Webhooks, or None
        self._hits: dict[tuple[str, str], list[float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- wiring -----------------------------------------------------------------------------------------
    def instrument(self, server: Any) -> None:
        """Capture each request's headers, client address and ``_context`` for the request object (done by
        wrapping the server's request handler and key check on the instance: nothing changes without cloud)."""
        handle, authorize = server._handle, server.keys.authorize

        async def _handle(scope: dict[str, Any], receive: Any) -> Any:
            client = scope.get("client")
            token = _scope.set(_Scope(scope.get("headers") or [], client[0] if client else None))
            if self.webhooks is not None:
                await self.webhooks.refresh()
            try:
                return await handle(scope, receive)
            finally:
                _scope.reset(token)

        def _authorize(info: Any, ip: Any) -> Any:
            auth = authorize(info, ip)
            current = _scope.get()
            if current is not None:
                current.context = info.context
            return auth

        server._handle = _handle
        server.keys.authorize = _authorize

    def trigger(self, kind: str, class_name: str) -> Definition | None:
        """The handler of a trigger: a registered webhook first (it overrides Cloud Code), then Cloud Code."""
        if self.webhooks is not None:
            hook = self.webhooks.trigger(kind, class_name)
            if hook is not None:
                return hook
        return self.cloud.trigger(kind, class_name)

    def function(self, name: str) -> Definition | None:
        if self.webhooks is not None:
            hook = self.webhooks.function(name)
            if hook is not None:
                return hook
        return self.cloud.functions.get(name)

    def has(self, kind: str, class_name: str) -> bool:
        return (kind, class_name) in self.cloud.triggers or (
            self.webhooks is not None and (kind, class_name) in self.webhooks.triggers)

    def saves(self, class_name: str) -> bool:
        """Whether saves of ``class_name`` run triggers (a batch then creates them one by one)."""
        return self.has(BEFORE_SAVE, class_name) or self.has(AFTER_SAVE, class_name)

    # --- the request object -----------------------------------------------------------------------------
    @staticmethod
    def _context() -> dict[str, Any]:
        current = _scope.get()
        context = current.context if current is not None else None
        if context is None and current is not None:
            context = current.headers.get("x-parse-cloud-context")
        if isinstance(context, str):  # as a JSON string in the header or the body
            try:
                context = orjson.loads(context)
            except orjson.JSONDecodeError:
                context = None
        return dict(context) if isinstance(context, dict) else {}

    async def _request(self, rest: Any, auth: Auth, **attrs: Any) -> CloudRequest:
        current = _scope.get() or _Scope()
        attrs.setdefault("context", self._context())
        return CloudRequest(user=await _user(rest, auth), master=auth.master, is_read_only=auth.read_only,
                            installation_id=auth.installation_id,
                            headers=dict(current.headers), ip=current.ip, **attrs)

    # --- running handlers -------------------------------------------------------------------------------
    async def _invoke(self, definition: Definition, request: CloudRequest, what: str,
                      default_code: int = SCRIPT_FAILED) -> Any:
        fn = definition.handler

        async def run() -> Any:
            result = fn(request) if inspect.iscoroutinefunction(fn) else await asyncio.to_thread(fn, request)
            if inspect.isawaitable(result):
                result = await result
            return result

        try:
            if definition.timeout is None:
                return await run()
            return await asyncio.wait_for(run(), definition.timeout)
        except ParseError:
            raise
        except TimeoutError:
            raise ParseError(default_code, f"{what} timed out after {definition.timeout:g} s") from None
        except Exception as exc:  # noqa: BLE001 - Cloud Code errors reach the client as 141
            log.warning("%s failed: %r", what, exc, exc_info=True)
            raise _failure(exc, default_code) from None

    async def _run(self, definition: Definition, request: CloudRequest, what: str,
                   default_code: int = SCRIPT_FAILED) -> Any:
        if definition.validator is not None:
            self._rate_limit(definition, request)
            await self._validate(definition.validator, request)
        return await self._invoke(definition, request, what, default_code)

    def _rate_limit(self, definition: Definition, request: CloudRequest) -> None:
        limit = definition.validator.rate_limit if definition.validator else None
        if not limit:
            return
        if request.master and not limit.get("includeMasterKey"):
            return
        if request.ip in ("127.0.0.1", "::1") and not limit.get("includeInternalRequests"):
            return
        zone = limit.get("zone", "ip")
        key = {"global": "*", "user": (request.user or {}).get("objectId") or request.ip,
               "session": request.headers.get("x-parse-session-token") or request.ip}.get(zone, request.ip)
        window = float(limit.get("requestTimeWindow", 60_000)) / 1000
        now = time.monotonic()
        hits = [t for t in self._hits.get((definition.name, str(key)), []) if t > now - window]
        if len(hits) >= int(limit.get("requestCount", 1)):
            self._hits[(definition.name, str(key))] = hits
            raise RateLimited(CONNECTION_FAILED, limit.get("errorResponseMessage") or "Too many requests.")
        hits.append(now)
        self._hits[(definition.name, str(key))] = hits

    async def _validate(self, validator: Validator, request: CloudRequest) -> None:
        if request.master and not validator.validate_master_key:
            return

        def fail(message: str) -> ParseError:
            return ParseError(VALIDATION_ERROR, message)

        user = request.user
        if user is None and request.class_name == "_User" and request.object is not None and request.original is None:
            user = request.object  # a sign-up validates as its new user
        if validator.require_user and not user:
            raise fail("Validation failed. Please login to continue.")
        if validator.require_master and not request.master:
            raise fail("Validation failed. Master key is required to complete this request.")
        params = request.object if request.object is not None else request.params
        for key, opt in validator.fields.items():
            if opt.get("default") is not None and params.get(key) is None:
                params[key] = copy.deepcopy(opt["default"])
            if opt.get("constant") and request.object is not None:
                if request.original is not None:
                    if key in request.original:
                        params[key] = copy.deepcopy(request.original[key])
                    else:
                        params.pop(key, None)
                elif opt.get("default") is not None:
                    params[key] = copy.deepcopy(opt["default"])
            if opt.get("required") and params.get(key) is None:
                raise fail(f"Validation failed. Please specify data for {key}.")
            if not opt.get("required") and key not in params:
                continue
            value = params.get(key)
            wanted = opt.get("type")
            if wanted is not None and not _type_matches(wanted, value):
                raise fail(f"Validation failed. Invalid type for {key}. Expected: "
                           f"{_JS_TYPES.get(wanted, getattr(wanted, '__name__', str(wanted)).lower())}")
            if "options" in opt:
                await _check_options(opt, key, value)

    # --- functions and jobs -----------------------------------------------------------------------------
    async def call_function(self, rest: Any, auth: Auth, name: str, params: dict[str, Any]) -> Any:
        definition = self.function(name)
        if definition is None:
            raise ParseError(SCRIPT_FAILED, f'Invalid function: "{name}"')
        request = await self._request(rest, auth, params=params, function_name=name)
        result = await self._run(definition, request, f"Cloud function {name}")
        try:
            return encode(result)
        except Unserialisable as exc:
            raise ParseError(SCRIPT_FAILED, f"Cloud function {name} returned {exc}, which cannot be sent as "
                                            "JSON") from None

    async def start_job(self, rest: Any, auth: Auth, name: str, params: dict[str, Any]) -> str:
        definition = self.cloud.jobs.get(name)
        if definition is None:
            raise ParseError(SCRIPT_FAILED, "Invalid job.")
        master = Auth(master=True)
        object_id, _ = await rest.create(master, "_JobStatus", {
            "jobName": name, "source": "api", "status": "running", "params": params, "ACL": {}})
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[Any]] = []  # message writes the final status must not overtake

        def message(text: Any) -> Any:
            update = rest.update(Auth(master=True), "_JobStatus", object_id, {"message": str(text)})
            try:
                task = asyncio.get_running_loop().create_task(update)
                pending.append(task)
                return task
            except RuntimeError:  # called from a plain (threaded) job
                future = asyncio.run_coroutine_threadsafe(update, loop)
                pending.append(asyncio.wrap_future(future, loop=loop))
                return future

        request = await self._request(rest, auth, params=params, job_name=name, job_id=object_id)
        request.message = message  # type: ignore[attr-defined]
        task = asyncio.create_task(self._run_job(rest, definition, request, object_id, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return object_id

    async def _run_job(self, rest: Any, definition: Definition, request: CloudRequest, object_id: str,
                       pending: list[asyncio.Future[Any]]) -> None:
        message: str | None
        try:
            result = await self._invoke(definition, request, f"Job {definition.name}")
            status, message = "succeeded", result if isinstance(result, str) else None
        except ParseError as exc:
            status, message = "failed", exc.message
        # A message the job set just before it ended is written first, so the final message wins.
        await asyncio.gather(*pending, return_exceptions=True)
        update: dict[str, Any] = {"status": status, "finishedAt": codec.date(codec.now_iso())}
        if message:
            update["message"] = message
        try:
            await rest.update(Auth(master=True), "_JobStatus", object_id, update)
        except Exception:  # noqa: BLE001 - a background task: log, never raise into the loop
            log.exception("could not record the end of job %s (%s)", definition.name, object_id)

    # --- triggers on writes -------------------------------------------------------------------------------
    async def create(self, rest: Any, auth: Auth, class_name: str, body: Any,
                     write: Callable[[Auth, str, Any], Awaitable[tuple[str, dict[str, Any]]]]
                     ) -> tuple[str, dict[str, Any]]:
        before = self.trigger(BEFORE_SAVE, class_name)
        after = self.trigger(AFTER_SAVE, class_name)
        if not isinstance(body, dict) or (before is None and after is None):
            return await write(auth, class_name, body)
        context = self._context()
        echoed: dict[str, Any] = {}
        if before is not None:
            obj = copy.deepcopy(body)
            snapshot = copy.deepcopy(obj)
            request = await self._request(rest, auth, trigger_name=BEFORE_SAVE, class_name=class_name, object=obj,
                                          context=context)
            await self._run(before, request, f"beforeSave trigger on {class_name}")
            changes = _changes(snapshot, request.object)
            body = dict(body)
            for key, value in changes.items():
                if _is_op(value) and value["__op"] == "Delete":
                    body.pop(key, None)
                else:
                    body[key] = value
                    if not _is_op(value) and key != "password":
                        echoed[key] = value
        object_id, response = await write(auth, class_name, body)
        response.update(echoed)
        if after is not None:
            await self._after_write(rest, auth, after, class_name, object_id, None, context)
        return object_id, response

    async def update(self, rest: Any, auth: Auth, class_name: str, object_id: str, body: Any,
                     write: Callable[[Auth, str, str, Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        before = self.trigger(BEFORE_SAVE, class_name)
        after = self.trigger(AFTER_SAVE, class_name)
        if not isinstance(body, dict) or (before is None and after is None):
            return await write(auth, class_name, object_id, body)
        original = await _fetch(rest, class_name, object_id)
        if original is None:
            return await write(auth, class_name, object_id, body)
        context = self._context()
        echoed: dict[str, Any] = {}
        if before is not None:
            obj = copy.deepcopy(original)
            for key, value in body.items():
                if _is_op(value) and value["__op"] == "Delete":
                    obj.pop(key, None)
                elif (_is_op(value) and value["__op"] == "Increment" and isinstance(value.get("amount"), int | float)
                      and isinstance(obj.get(key, 0), int | float)):
                    obj[key] = obj.get(key, 0) + value["amount"]
                else:
                    obj[key] = copy.deepcopy(value)
            snapshot = copy.deepcopy(obj)
            request = await self._request(rest, auth, trigger_name=BEFORE_SAVE, class_name=class_name, object=obj,
                                          original=copy.deepcopy(original), context=context)
            await self._run(before, request, f"beforeSave trigger on {class_name}")
            changes = _changes(snapshot, request.object)
            body = {**body, **changes}
            echoed = {k: v for k, v in changes.items() if not _is_op(v) and k != "password"}
        response = await write(auth, class_name, object_id, body)
        response.update(echoed)
        if after is not None:
            await self._after_write(rest, auth, after, class_name, object_id, original, context)
        return response

    async def _after_write(self, rest: Any, auth: Auth, definition: Definition, class_name: str, object_id: str,
                           original: dict[str, Any] | None, context: dict[str, Any]) -> None:
        """afterSave: its errors are logged, never returned (the object is saved)."""
        try:
            saved = await _fetch(rest, class_name, object_id)
            request = await self._request(rest, auth, trigger_name=AFTER_SAVE, class_name=class_name, object=saved,
                                          original=original, context=context)
            await self._run(definition, request, f"afterSave trigger on {class_name}")
        except ParseError as exc:
            log.error("afterSave failed for %s %s: %s (code %s)", class_name, object_id, exc.message, exc.code)

    async def delete(self, rest: Any, auth: Auth, class_name: str, object_id: str,
                     write: Callable[[Auth, str, str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        before = self.trigger(BEFORE_DELETE, class_name)
        after = self.trigger(AFTER_DELETE, class_name)
        original = await _fetch(rest, class_name, object_id) if before or after else None
        if original is None:
            return await write(auth, class_name, object_id)
        context = self._context()
        if before is not None:
            request = await self._request(rest, auth, trigger_name=BEFORE_DELETE, class_name=class_name,
                                          object=copy.deepcopy(original), context=context)
            await self._run(before, request, f"beforeDelete trigger on {class_name}")
        response = await write(auth, class_name, object_id)
        if after is not None:
            try:
                request = await self._request(rest, auth, trigger_name=AFTER_DELETE, class_name=class_name,
                                              object=original, context=context)
                await self._run(after, request, f"afterDelete trigger on {class_name}")
            except ParseError as exc:
                log.error("afterDelete failed for %s %s: %s (code %s)", class_name, object_id, exc.message,
                          exc.code)
        return response

    # --- triggers on reads --------------------------------------------------------------------------------
    async def find(self, rest: Any, auth: Auth, class_name: str, opts: query.FindOptions, operation: str,
                   run: Callable[..., Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        before = self.trigger(BEFORE_FIND, class_name)
        after = self.trigger(AFTER_FIND, class_name)
        if before is None and after is None:
            return await run(auth, class_name, opts, operation=operation)
        if before is not None:
            cloud_query = CloudQuery(class_name, opts)
            request = await self._request(rest, auth, trigger_name=BEFORE_FIND, class_name=class_name,
                                          query=cloud_query, is_get=operation == "get", count=bool(opts.count))
            await self._run(before, request, f"beforeFind trigger on {class_name}")
            try:
                cloud_query._apply(opts)
            except (TypeError, ValueError) as exc:
                raise ParseError(SCRIPT_FAILED, f"beforeFind trigger on {class_name}: {exc}") from None
        response = await run(auth, class_name, opts, operation=operation)
        if after is not None and isinstance(response.get("results"), list) and not opts.explain:
            request = await self._request(rest, auth, trigger_name=AFTER_FIND, class_name=class_name,
                                          objects=response["results"], is_get=operation == "get")
            result = await self._run(after, request, f"afterFind trigger on {class_name}")
            objects = result if isinstance(result, list) else request.objects
            try:
                response["results"] = encode(objects)
            except Unserialisable as exc:
                raise ParseError(SCRIPT_FAILED, f"afterFind trigger on {class_name} returned {exc}") from None
        return response

    # --- files ------------------------------------------------------------------------------------------
    async def file_trigger(self, rest: Any, auth: Auth, kind: str, file: CloudFile, *, file_size: int | None = None,
                           content_length: int | None = None) -> CloudFile | None:
        """Run a file trigger (``kind``: beforeSave, afterSave, beforeDelete, afterDelete on ``@File``). Errors
        default to 130 (saves) or 153 (deletes), as parse-server's. For beforeSave, the file to store: the
        handler's returned :class:`CloudFile`, or ``request.file`` as the handler left it."""
        definition = self.trigger(kind, FILE_CLASS)
        if definition is None:
            return file
        default_code = 153 if kind in (BEFORE_DELETE, AFTER_DELETE) else 130
        request = await self._request(rest, auth, trigger_name=kind, file=file, file_size=file_size,
                                      content_length=content_length)
        result = await self._run(definition, request, f"{kind}File trigger", default_code)
        if kind != BEFORE_SAVE:
            return file
        chosen = result if isinstance(result, CloudFile) else request.file
        if not isinstance(chosen, CloudFile) or not isinstance(chosen.name, str) or not chosen.name:
            raise ParseError(default_code, "beforeSaveFile must leave request.file a CloudFile with a name")
        if chosen.url is None and not isinstance(chosen.data, bytes | bytearray):
            raise ParseError(default_code, "beforeSaveFile must leave the file's data as bytes")
        return chosen

    # --- log-in and log-out -------------------------------------------------------------------------------
    async def before_login(self, rest: Any, auth: Auth, user: dict[str, Any]) -> None:
        definition = self.trigger(BEFORE_LOGIN, "_User")
        if definition is not None:
            request = await self._request(rest, auth, trigger_name=BEFORE_LOGIN, class_name="_User",
                                          object=copy.deepcopy(user))
            await self._run(definition, request, "beforeLogin trigger")

    async def after_login(self, rest: Any, auth: Auth, user: dict[str, Any]) -> None:
        definition = self.trigger(AFTER_LOGIN, "_User")
        if definition is not None:
            user_auth = Auth(user_id=user.get("objectId"), installation_id=auth.installation_id)
            request = await self._request(rest, user_auth, trigger_name=AFTER_LOGIN, class_name="_User",
                                          object=copy.deepcopy(user))
            await self._run(definition, request, "afterLogin trigger")

    async def logout_session(self, rest: Any, token: str) -> dict[str, Any] | None:
        """The session a log-out ends, read before it is deleted (None when no afterLogout trigger)."""
        if not self.has(AFTER_LOGOUT, "_Session"):
            return None
        schema = await rest.schemas.get("_Session")
        if schema is None:
            return None
        rows = await rest.storage.find(schema, query.Compare("sessionToken", "eq", token), limit=1)
        return rest.to_wire(schema, rows[0], Auth(master=True)) if rows else None

    async def after_logout(self, rest: Any, auth: Auth, session: dict[str, Any] | None) -> None:
        definition = self.trigger(AFTER_LOGOUT, "_Session")
        if definition is None or session is None:
            return
        try:
            request = await self._request(rest, auth, trigger_name=AFTER_LOGOUT, class_name="_Session",
                                          object=session)
            await self._run(definition, request, "afterLogout trigger")
        except ParseError as exc:
            log.error("afterLogout failed: %s (code %s)", exc.message, exc.code)


def _type_matches(wanted: Any, value: Any) -> bool:
    if wanted in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if wanted is bool:
        return isinstance(value, bool)
    if wanted is list:
        return isinstance(value, list | tuple)
    return isinstance(value, wanted)


async def _check_options(opt: dict[str, Any], key: str, value: Any) -> None:
    options = opt["options"]
    invalid = opt.get("error") or f"Validation failed. Invalid value for {key}."
    if callable(options):
        try:
            result = options(value)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - a failing check is a validation failure
            raise ParseError(VALIDATION_ERROR, opt.get("error") or str(exc) or invalid) from None
        if not result and result is not None:
            raise ParseError(VALIDATION_ERROR, invalid)
        return
    choices = list(options) if isinstance(options, list | tuple | set | frozenset) else [options]
    if value not in choices:
        raise ParseError(VALIDATION_ERROR, opt.get("error") or f"Validation failed. Invalid option for {key}. "
                                                               f"Expected: {', '.join(map(str, choices))}")


async def _fetch(rest: Any, class_name: str, object_id: str) -> dict[str, Any] | None:
    """An object in REST form, read with the master key (None if missing)."""
    schema = await rest.schemas.get(class_name)
    if schema is None:
        return None
    rows = await rest.storage.find(schema, query.Compare("objectId", "eq", object_id), limit=1)
    return rest.to_wire(schema, rows[0], Auth(master=True)) if rows else None


async def _user(rest: Any, auth: Auth) -> dict[str, Any] | None:
    if not auth.user_id:
        return None
    user = await _fetch(rest, "_User", auth.user_id)
    if user is not None and auth.session_token:
        user["sessionToken"] = auth.session_token
    return user
