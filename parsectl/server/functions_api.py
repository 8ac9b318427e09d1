"""``POST /functions/:name`` and ``POST /jobs/:name``: Cloud Code functions and background jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.server.rest import RestService
    from parsectl.server.routes import Request

SCRIPT_FAILED = 141


class FunctionsAPI:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    async def run_function(self, request: Request, args: dict[str, str]) -> Response:
        name = args["functionName"]
        if self.rest.cloud is None:
            raise ParseError(SCRIPT_FAILED, f'Invalid function: "{name}"')
        params = dict(request.body) if isinstance(request.body, dict) else {}
        result = await self.rest.cloud.call_function(self.rest, request.auth, name, params)
        return Response.json({"result": result})

    async def run_job(self, request: Request, args: dict[str, str]) -> Response:
        if not request.auth.master:
            raise HTTPError(403, "unauthorized: master key is required")
        body: dict[str, Any] = dict(request.body) if isinstance(request.body, dict) else {}
        name = args.get("jobName") or body.get("jobName")
        if self.rest.cloud is None or not isinstance(name, str):
            raise ParseError(SCRIPT_FAILED, "Invalid job.")
        object_id = await self.rest.cloud.start_job(self.rest, request.auth, name, body)
        return Response.json({}, 200, [(b"x-parse-job-status-id", object_id.encode())])
