"""``ParseServer``: the Parse REST API as an ASGI application.

Mount it like the node server is mounted on Express::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from parsectl.server import ParseServer

    api = ParseServer(app_id="myAppId", master_key="secret", database_uri="sqlite:///data/parse.db")
    app = Starlette(routes=[Mount("/parse", app=api)])

The app serves paths relative to where it is mounted (``root_path``); :func:`mounted` wraps it for
standalone serving at ``mountPath``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson

from parsectl.files import adapter_for as files_adapter_for
from parsectl.model import errors
from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.account import AccountOptions, AccountService
from parsectl.server.config import ServerOptions
from parsectl.server.email import adapter_for as email_adapter_for
from parsectl.server.envelope import KeyPolicy, apply_body_keys, read_headers
from parsectl.server.files_api import FilesApi
from parsectl.server.http import (
    BodyTooLarge,
    Response,
    cors_headers,
    error_response,
    not_found_page,
    read_body,
    send_response,
)
from parsectl.server.pages import Pages
from parsectl.server.push_api import register as register_push
from parsectl.server.rest import RestService
from parsectl.server.routes import Request, Router, run_batch
from parsectl.server.schemas import SchemaController
from parsectl.storage import adapter_for

log = logging.getLogger("parsectl.server")
_SLASHES = re.compile(r"/{2,}")
_base_url: ContextVar[str] = ContextVar("parsectl_base_url", default="")


class ParseServer:
    """An ASGI app serving the Parse REST API.

    Options use parse-server's names, in snake_case as keyword arguments or camelCase in a mapping::

        ParseServer(app_id="a", master_key="m")
        ParseServer({"appId": "a", "masterKey": "m", "databaseURI": "sqlite:///parse.db"})
    """

    def __init__(self, config: dict[str, Any] | ServerOptions | None = None, **options: Any) -> None:
        if isinstance(config, ServerOptions):
            self.options = config
        else:
            self.options = ServerOptions.from_mapping({**(config or {}), **options})
        self.storage = adapter_for(self.options.database_uri, collection_prefix=self.options.collection_prefix,
                                   database_options=self.options.database_options)
        self.schemas = SchemaController(self.storage)
        self.rest = _RequestAwareRest(self.options, self.storage, self.schemas)
        account_options = dataclasses.asdict(dataclasses.replace(self.options, push=None))  # adapters may not copy
        self.account = AccountService(self.rest, AccountOptions.from_mapping(account_options),
                                      email_adapter_for(self.options.email_adapter))
        self.rest.account = self.account
        self.pages = Pages(self.account)
        self.router = Router(self.rest)
        self.keys = KeyPolicy(self.options)
        self.cors = cors_headers(self.options.allow_origin)
        self.files_adapter = files_adapter_for(self.options)
        self.rest.files_adapter = self.files_adapter
        self.files = FilesApi(self.options, self.files_adapter, self.keys, self.rest.sessions.resolve, self._base_url,
                              self.storage, self.schemas)
        self.rest.cloud = _cloud_runtime(self.options, self.storage)  # Cloud Code and webhooks (parsectl.cloud)
        self.rest.cloud.instrument(self)
        self.files.cloud, self.files.rest = self.rest.cloud, self.rest
        self.push = _push_controller(self.rest, self.options)
        self.rest.push = self.push  # type: ignore[attr-defined]  # read by /serverInfo
        register_push(self.router, self.push)
        self._started = False
        self._start_lock = asyncio.Lock()
        self.reload_cloud = False  # parsectl serve --reload: reload Cloud Code when its files change
        self._reloader: Any = None

    # --- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the database and load schemas (done on the first request if not called)."""
        async with self._start_lock:
            if self._started:
                return
            await self.storage.open()
            await self.schemas.load()
            await self.rest.cloud.webhooks.load()
            if self.reload_cloud and self.options.cloud:
                from parsectl.cloud.reload import CloudReloader

                self._reloader = CloudReloader(self.options.cloud, self.rest.cloud)
                self._reloader.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            if self._reloader is not None:
                await self._reloader.stop()
                self._reloader = None
            await self.storage.close()
            await self.files_adapter.close()
            await self.push.close()
            self._started = False

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # noqa: BLE001 - reported to the ASGI server
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- ASGI -------------------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not self._started:
            await self.start()
        try:
            response = await self._handle(scope, receive)
        except (ParseError, HTTPError) as exc:
            response = error_response(exc)
        except BodyTooLarge:
            response = error_response(HTTPError(413, "request entity too large"))
        except Exception:  # noqa: BLE001 - any other fault is a 500, never a traceback to the client
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(RuntimeError())
        await send_response(send, response, self.cors)

    def _route_path(self, scope: dict[str, Any]) -> tuple[str, str]:
        root = scope.get("root_path", "") or ""
        path = scope.get("path", "") or "/"
        if root and path.startswith(root):
            path = path[len(root):]
        path = _SLASHES.sub("/", "/" + path)
        if len(path) > 1:
            path = path.rstrip("/")
        return root, path

    def _base_url(self, scope: dict[str, Any], root: str) -> str:
        if self.options.public_server_url or self.options.server_url:
            return (self.options.public_server_url or self.options.server_url or "").rstrip("/")
        host = "localhost"
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                break
        return f"{scope.get('scheme', 'http')}://{host}{root}"

    async def _handle(self, scope: dict[str, Any], receive: Any) -> Response:
        method = scope["method"]
        root, path = self._route_path(scope)
        if method == "OPTIONS":
            return Response(200, b"", None)
        if path == "/health":
            return Response.json({"status": "ok"})
        if path == "/files" or path.startswith("/files/"):
            response = await self.files.handle(scope, receive, method, path, root)
            if response is not None:
                return response
        if path == "/apps" or path.startswith("/apps/"):  # the email pages need no keys
            raw = await read_body(receive, self.options.max_upload_bytes)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            query_string = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            page = await self.pages.handle(method, path, query_string, raw, headers)
            return page or not_found_page(scope["method"], root + path)
        raw = await read_body(receive, self.options.max_upload_bytes)
        body: Any = {}
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ParseError(errors.INVALID_JSON, f"Invalid JSON in request body: {exc.msg}") from None
        if method == "POST" and isinstance(body, dict) and isinstance(body.get("_method"), str):
            method = body.pop("_method").upper()
        info = read_headers(scope.get("headers", []))
        apply_body_keys(info, body, self.options)
        client = scope.get("client")
        auth = self.keys.authorize(info, client[0] if client else None)
        if path == "/login":
            auth.session_token = None  # as parse-server: a log-in ignores any session token
        if auth.session_token and not auth.master:
            if path == "/upgradeToRevocableSession" and not auth.session_token.startswith("r:"):
                await self.rest.sessions.resolve_legacy(auth)
            else:
                await self.rest.sessions.resolve(auth)

        base_url = self._base_url(scope, root)
        _base_url.set(base_url)
        if method == "GET":
            params = _query_params(scope.get("query_string", b""))
            if isinstance(body, dict) and not params:
                params = body
        else:
            params = body if isinstance(body, dict) else {}
        request = Request(method, path, params, body, auth, base_url, root)
        if path == "/batch" and method == "POST":
            extra = [_url_path(u) for u in (self.options.server_url, self.options.public_server_url) if u]
            return await run_batch(self.router, request, extra)
        matched = self.router.match(method, path)
        if matched is None:
            return not_found_page(scope["method"], scope.get("root_path", "") + path)
        handler, args = matched
        return await handler(request, args)

def _push_controller(rest: RestService, options: ServerOptions) -> Any:
    """The ``push`` option checked and loaded (parsectl.push); ConfigError when it is wrong."""
    from parsectl.push import PushConfigError, PushController, load
    from parsectl.server.config import ConfigError

    try:
        setup = load(options.push) if options.push is not None else None
    except PushConfigError as exc:
        raise ConfigError(str(exc)) from exc
    return PushController(rest, setup, scheduled_push=options.scheduled_push)


def _cloud_runtime(options: ServerOptions, storage: Any) -> Any:
    """The Cloud Code runtime: the ``cloud`` option's code (if any) and the webhooks stored in ``_Hooks``."""
    from parsectl.cloud import Cloud, CloudLoadError, CloudRuntime, load
    from parsectl.cloud.webhooks import Webhooks
    from parsectl.server.config import ConfigError

    try:
        cloud = load(options.cloud) if options.cloud else Cloud()
    except CloudLoadError as exc:
        raise ConfigError(str(exc)) from exc
    webhooks = Webhooks(storage, app_id=options.app_id, key=options.webhook_key, timeout=options.webhook_timeout,
                        allowed_hosts=options.webhook_allowed_hosts)
    return CloudRuntime(cloud, webhooks)


class _RequestAwareRest(RestService):
    """File URLs and Locations follow the URL the request came in on when no serverURL is set."""

    def server_url(self) -> str:
        return super().server_url() or _base_url.get()


def _query_params(query_string: bytes) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in _split_query(query_string.decode("latin-1")):
        if key == "where":
            params[key] = value
            continue
        try:
            params[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            params[key] = value
    return params


def _split_query(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``, minus its generality: only parts that hold ``%`` or ``+``
    pay for unquoting (a query string is read on every GET)."""
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        if "%" in value or "+" in value:
            value = unquote_plus(value)
        pairs.append((key, value))
    return pairs


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.rstrip("/")


def mounted(api: ParseServer) -> Any:
    """An ASGI app serving ``api`` under its ``mountPath`` (``/parse`` by default), 404 elsewhere."""
    prefix = api.options.mount_path

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await api(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            await send_response(send, not_found_page(scope["method"], path), api.cors)
            return
        await api({**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send)

    return app
