"""Webhooks: Cloud functions and triggers served by an HTTP endpoint (parse-server's ``/hooks``).

A registered webhook is called with a POST of parse-server's payload (the request object as JSON: for a
function ``params``, ``master``, ``isReadOnly``, ``user``, ``installationId``, ``log``, ``headers``,
``ip``, ``functionName``, ``context``; for a trigger ``triggerName``, ``object`` and ``original`` with
their ``className``, and the same caller fields), with ``X-Parse-Webhook-Key`` when the ``webhookKey``
option is set. It answers ``{"success": result}`` or ``{"error": message}``; for beforeSave the
success value is the object to save (its ``createdAt``, ``updatedAt`` and ``className`` are ignored).

A webhook overrides a Python Cloud Code function or trigger of the same name while it is registered (as
in parse-server, where the webhook replaces the handler). Hooks live in ``_Hooks``; each worker loads them
at start-up and re-reads them at most every ``REFRESH_SECONDS``, so all workers apply a change.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from parsectl.cloud.egress import EgressPolicy, Refused, WebhookFailed, post_json
from parsectl.cloud.hook_store import HookStore
from parsectl.cloud.registry import BEFORE_FIND, BEFORE_SAVE, Definition
from parsectl.model.errors import ParseError

log = logging.getLogger("parsectl.cloud.webhooks")

SCRIPT_FAILED = 141
WEBHOOK_ERROR = 143
REFRESH_SECONDS = 2.0
# parse-server's triggers.Types: what a webhook may be registered for
TRIGGER_TYPES = ("beforeLogin", "afterLogin", "afterLogout", "beforePasswordResetRequest", "beforeSave",
                 "afterSave", "beforeDelete", "afterDelete", "beforeFind", "afterFind", "beforeConnect",
                 "beforeSubscribe", "afterEvent")
_CALLER_FIELDS = ("master", "isReadOnly", "user", "installationId", "log", "headers", "ip")


def _with_class(obj: dict[str, Any] | None, class_name: str | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    return {**obj, "className": class_name}


def payload(request: Any, app_id: str) -> dict[str, Any]:
    """The JSON parse-server posts for ``request`` (a :class:`~parsectl.cloud.runtime.CloudRequest`)."""
    from parsectl.cloud.runtime import encode

    body: dict[str, Any] = {}
    if request.function_name is not None:
        body["params"] = request.params
    else:
        body["triggerName"] = request.trigger_name
        if request.object is not None:
            body["object"] = _with_class(request.object, request.class_name)
        if request.original is not None:
            body["original"] = _with_class(request.original, request.class_name)
        if request.query is not None:
            q = request.query
            body["query"] = {"className": q.class_name, "where": q._where[0] if len(q._where) == 1 else {},
                             "limit": q.limit, "skip": q.skip}
        if request.objects is not None:
            body["objects"] = [_with_class(o, request.class_name) for o in request.objects]
    caller = {"master": request.master, "isReadOnly": bool(getattr(request, "is_read_only", False)),
              "user": request.user, "installationId": request.installation_id, "log": {"appId": app_id},
              "headers": request.headers, "ip": request.ip}
    for key in _CALLER_FIELDS:
        if caller[key] is not None:
            body[key] = caller[key]
    if request.function_name is not None:
        body["functionName"] = request.function_name
    body["context"] = request.context
    return encode(body)


def _error_message(error: Any) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("error", "message"):
            if isinstance(error.get(key), str):
                return error[key]
    return orjson.dumps(error).decode()


class Webhooks:
    """The registered webhooks of one server: admin operations, and Definitions for the runtime."""

    def __init__(self, storage: Any, *, app_id: str, key: str | None, timeout: float | None,
                 allowed_hosts: list[str] | None) -> None:
        self.store = HookStore(storage)
        self.app_id = app_id
        self.key = key
        self.timeout = timeout
        self.policy = EgressPolicy(allowed_hosts)
        self.functions: dict[str, str] = {}
        self.triggers: dict[tuple[str, str], str] = {}
        self._loaded_at: float | None = None
        self._warned = False

    # --- loading --------------------------------------------------------------------------------------
    async def load(self) -> None:
        functions: dict[str, str] = {}
        triggers: dict[tuple[str, str], str] = {}
        for hook in await self.store.all():
            url = hook.get("url")
            if not url:
                continue
            if hook.get("functionName"):
                functions[hook["functionName"]] = url
            elif hook.get("className") and hook.get("triggerName"):
                triggers[(hook["triggerName"], hook["className"])] = url
        self.functions, self.triggers = functions, triggers
        self._loaded_at = time.monotonic()

    async def refresh(self) -> None:
        """Re-read ``_Hooks`` when the copy in memory is older than REFRESH_SECONDS (other workers may
        have changed it)."""
        if self._loaded_at is None or time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            try:
                await self.load()
            except Exception:  # noqa: BLE001 - keep serving with the hooks known so far
                log.exception("could not re-read _Hooks")
                self._loaded_at = time.monotonic()

    # --- what the runtime calls -----------------------------------------------------------------------
    def function(self, name: str) -> Definition | None:
        url = self.functions.get(name)
        return None if url is None else self._definition(f"webhook function {name}", url, None)

    def trigger(self, kind: str, class_name: str) -> Definition | None:
        url = self.triggers.get((kind, class_name))
        return None if url is None else self._definition(f"webhook {kind} {class_name}", url, kind)

    def _definition(self, name: str, url: str, trigger: str | None) -> Definition:
        async def call(request: Any) -> Any:
            return await self._call(url, trigger, request)

        return Definition(name, call, None, self.timeout)

    async def _call(self, url: str, trigger: str | None, request: Any) -> Any:
        headers: dict[str, str] = {}
        if self.key:
            headers["X-Parse-Webhook-Key"] = self.key
        elif not self._warned:
            log.warning("Making outgoing webhook request without webhookKey being set!")
            self._warned = True
        try:
            answer = await post_json(self.policy, url, payload(request, self.app_id), headers, self.timeout)
        except Refused as exc:
            raise ParseError(SCRIPT_FAILED, str(exc)) from None
        except WebhookFailed as exc:
            raise ParseError(SCRIPT_FAILED, str(exc)) from None
        except orjson.JSONDecodeError:
            raise ParseError(SCRIPT_FAILED, "Malformed response") from None
        if not isinstance(answer, dict):
            return None
        if answer.get("error") is not None:
            raise ParseError(SCRIPT_FAILED, _error_message(answer["error"]))
        result = answer.get("success")
        if trigger == BEFORE_SAVE and isinstance(result, dict) and request.object is not None:
            changed = {k: v for k, v in result.items() if k not in ("createdAt", "updatedAt", "className")}
            if request.original is None:
                request.object = changed  # a new object: what the webhook answers is what is saved
            else:
                request.object = {**request.object, **changed}
            return None
        if trigger == BEFORE_FIND:
            return None
        return result

    # --- admin ----------------------------------------------------------------------------------------
    async def check_url(self, url: Any) -> None:
        """Refuse (143, HTTP 400) a URL the egress policy does not allow."""
        try:
            await self.policy.resolve(url)
        except Refused as exc:
            raise ParseError(WEBHOOK_ERROR, str(exc)) from None

    async def get_function(self, name: str) -> dict[str, Any] | None:
        for hook in await self.store.all():
            if hook.get("functionName") == name:
                return {"functionName": name, "url": hook.get("url")}
        return None

    async def get_trigger(self, class_name: str, trigger: str) -> dict[str, Any] | None:
        for hook in await self.store.all():
            if hook.get("className") == class_name and hook.get("triggerName") == trigger:
                return {"className": class_name, "triggerName": trigger, "url": hook.get("url")}
        return None

    async def list_functions(self) -> list[dict[str, Any]]:
        return [{"functionName": h["functionName"], "url": h.get("url")} for h in await self.store.all()
                if h.get("functionName")]

    async def list_triggers(self) -> list[dict[str, Any]]:
        return [{"className": h["className"], "triggerName": h["triggerName"], "url": h.get("url")}
                for h in await self.store.all() if h.get("className") and h.get("triggerName")]

    async def save(self, hook: dict[str, Any]) -> dict[str, Any]:
        await self.check_url(hook["url"])
        await self.store.save(hook)
        if "functionName" in hook:
            self.functions[hook["functionName"]] = hook["url"]
        else:
            self.triggers[(hook["triggerName"], hook["className"])] = hook["url"]
        return hook

    async def delete_function(self, name: str) -> None:
        await self.store.delete({"functionName": name})
        self.functions.pop(name, None)

    async def delete_trigger(self, class_name: str, trigger: str) -> None:
        await self.store.delete({"className": class_name, "triggerName": trigger})
        self.triggers.pop((trigger, class_name), None)
