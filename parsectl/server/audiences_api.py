"""``/push_audiences``: saved push audiences (``_Audience``: ``name`` and ``query``, a JSON string of an
installation query), as parse-server 9.10's AudiencesRouter: the classes API on ``_Audience`` with the
master key required, and ``query`` read back as an object. Parse Dashboard's Push page lists and saves them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import orjson

from parsectl.server.jobs_api import _require_master

if TYPE_CHECKING:
    from parsectl.server.http import Response
    from parsectl.server.routes import Request, Router

CLASS_NAME = "_Audience"


def _with_query_object(item: dict[str, Any]) -> None:
    text = item.get("query")
    if isinstance(text, str):
        # stored by someone else as plain text: shown as it is (node answers 500 here)
        with contextlib.suppress(orjson.JSONDecodeError):
            item["query"] = orjson.loads(text)


def register(router: Router) -> None:
    async def find(request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        response = await router.find(request, {"className": CLASS_NAME})
        for item in response.data.get("results", []):
            _with_query_object(item)
        return response

    async def get(request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        response = await router.get(request, {"className": CLASS_NAME, **args})
        _with_query_object(response.data)
        return response

    async def create(request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return await router.create(request, {"className": CLASS_NAME})

    async def update(request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return await router.update(request, {"className": CLASS_NAME, **args})

    async def delete(request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return await router.delete(request, {"className": CLASS_NAME, **args})

    one = r"/push_audiences/(?P<objectId>[^/]+)"
    router.add("GET", r"/push_audiences", find)
    router.add("GET", one, get)
    router.add("POST", r"/push_audiences", create)
    router.add("PUT", one, update)
    router.add("DELETE", one, delete)
