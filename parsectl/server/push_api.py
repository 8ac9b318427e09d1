"""``POST /push``: send a push notification (master key only), as parse-server's PushRouter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parsectl.model import errors
from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.push import PushController
    from parsectl.server.routes import Request, Router


class PushAPI:
    def __init__(self, controller: PushController) -> None:
        self.controller = controller

    async def send(self, request: Request, args: dict[str, str]) -> Response:
        if not request.auth.master:
            raise HTTPError(403, "Permission denied")  # node 9 sanitises its message
        if request.auth.read_only:
            raise ParseError(errors.OPERATION_FORBIDDEN, "Permission denied")  # node 9's sanitised message
        body = request.body if isinstance(request.body, dict) else {}
        status_id = await self.controller.send_push(body)
        return Response.json({"result": True}, 200, [(b"x-parse-push-status-id", status_id.encode())])


def register(router: Router, controller: PushController) -> None:
    router.add("POST", r"/push", PushAPI(controller).send)
