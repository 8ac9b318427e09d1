"""``/hooks/functions`` and ``/hooks/triggers``: webhook administration (master key only), as parse-server.

GET lists or reads one; POST creates ``{functionName, url}`` or ``{className, triggerName, url}`` (either
path accepts either body, as in parse-server); PUT ``{url}`` changes the URL; PUT ``{"__op": "Delete"}``
removes it. Errors are 143 (WEBHOOK_ERROR) with parse-server's messages. Unlike parse-server, a URL must be
an http(s) URL the ``webhookAllowedHosts`` policy allows (else 143 saying why), and the read-only master key
cannot change hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parsectl.model import errors
from parsectl.model.errors import ParseError
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.cloud.webhooks import Webhooks
    from parsectl.server.routes import Request, Router

WEBHOOK_ERROR = 143


def _invalid() -> ParseError:
    return ParseError(WEBHOOK_ERROR, "invalid hook declaration")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class HooksAPI:
    def __init__(self, router: Router) -> None:
        self.rest = router.rest

    @property
    def hooks(self) -> Webhooks:
        return self.rest.cloud.webhooks

    @staticmethod
    def _master(request: Request, writing: bool = False) -> None:
        from parsectl.server.routes import require_master

        require_master(request)
        if writing and request.auth.read_only:
            raise ParseError(errors.OPERATION_FORBIDDEN, "read-only masterKey isn't allowed to change webhooks.")

    async def _create_or_update(self, body: dict[str, Any]) -> dict[str, Any]:
        from parsectl.cloud.webhooks import TRIGGER_TYPES

        url = _text(body.get("url"))
        if _text(body.get("functionName")) and url:
            hook = {"functionName": body["functionName"], "url": url}
        elif _text(body.get("className")) and url and body.get("triggerName") in TRIGGER_TYPES:
            hook = {"className": body["className"], "url": url, "triggerName": body["triggerName"]}
        else:
            raise _invalid()
        return await self.hooks.save(hook)

    async def post(self, request: Request, args: dict[str, str]) -> Response:
        self._master(request, writing=True)
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("functionName"):
            if not isinstance(body["functionName"], str):
                raise _invalid()
            if await self.hooks.get_function(body["functionName"]) is not None:
                raise ParseError(WEBHOOK_ERROR, f"function name: {body['functionName']} already exists")
        elif body.get("className") and body.get("triggerName"):
            if not isinstance(body["className"], str) or not isinstance(body["triggerName"], str):
                raise _invalid()
            if await self.hooks.get_trigger(body["className"], body["triggerName"]) is not None:
                raise ParseError(WEBHOOK_ERROR, f"class {body['className']} already has trigger {body['triggerName']}")
        else:
            raise _invalid()
        return Response.json(await self._create_or_update(body))

    async def get_functions(self, request: Request, args: dict[str, str]) -> Response:
        self._master(request)
        name = args.get("functionName")
        if name is None:
            return Response.json(await self.hooks.list_functions())
        found = await self.hooks.get_function(name)
        if found is None:
            raise ParseError(WEBHOOK_ERROR, f"no function named: {name} is defined")
        return Response.json(found)

    async def get_triggers(self, request: Request, args: dict[str, str]) -> Response:
        self._master(request)
        class_name = args.get("className")
        if class_name is None:
            return Response.json(await self.hooks.list_triggers())
        found = await self.hooks.get_trigger(class_name, args["triggerName"])
        if found is None:
            raise ParseError(WEBHOOK_ERROR, f"class {class_name} does not exist")
        return Response.json(found)

    async def put_function(self, request: Request, args: dict[str, str]) -> Response:
        self._master(request, writing=True)
        body = request.body if isinstance(request.body, dict) else {}
        name = args["functionName"]
        if body.get("__op") == "Delete":
            await self.hooks.delete_function(name)
            return Response.json({})
        if not _text(body.get("url")):
            raise _invalid()
        if await self.hooks.get_function(name) is None:
            raise ParseError(WEBHOOK_ERROR, f"no function named: {name} is defined")
        return Response.json(await self._create_or_update({"functionName": name, "url": body["url"]}))

    async def put_trigger(self, request: Request, args: dict[str, str]) -> Response:
        self._master(request, writing=True)
        body = request.body if isinstance(request.body, dict) else {}
        class_name, trigger = args["className"], args["triggerName"]
        if body.get("__op") == "Delete":
            await self.hooks.delete_trigger(class_name, trigger)
            return Response.json({})
        if not _text(body.get("url")):
            raise _invalid()
        if await self.hooks.get_trigger(class_name, trigger) is None:
            raise ParseError(WEBHOOK_ERROR, f"class {class_name} does not exist")
        return Response.json(await self._create_or_update(
            {"className": class_name, "triggerName": trigger, "url": body["url"]}))


def register_hook_routes(router: Router) -> None:
    api = HooksAPI(router)
    fn = r"/hooks/functions/(?P<functionName>[^/]+)"
    tr = r"/hooks/triggers/(?P<className>[^/]+)/(?P<triggerName>[^/]+)"
    router.add("GET", r"/hooks/functions", api.get_functions)
    router.add("GET", r"/hooks/triggers", api.get_triggers)
    router.add("GET", fn, api.get_functions)
    router.add("GET", tr, api.get_triggers)
    router.add("POST", r"/hooks/functions", api.post)
    router.add("POST", r"/hooks/triggers", api.post)
    router.add("PUT", fn, api.put_function)
    router.add("PUT", tr, api.put_trigger)
