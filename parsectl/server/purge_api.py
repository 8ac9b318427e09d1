"""``DELETE /purge/:className`` (master key): delete every object of a class and keep its schema."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parsectl.model import errors, query
from parsectl.model.errors import ParseError
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.server.rest import RestService
    from parsectl.server.routes import Request


class PurgeAPI:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    async def purge(self, request: Request, args: dict[str, str]) -> Response:
        from parsectl.server.routes import require_master

        require_master(request)
        if request.auth.read_only:
            raise ParseError(errors.OPERATION_FORBIDDEN, "read-only masterKey isn't allowed to purge a schema.")
        class_name = args["className"]
        schema = await self.rest.schemas.get(class_name)
        if schema is not None:  # as parse-server, a class that does not exist purges to {} too
            await self.rest.storage.delete(schema, query.MatchAll(), many=True)
            if class_name == "_Role":
                self.rest.sessions.clear_role_cache()
        return Response.json({})
