"""``/cloud_code/jobs``: the job schedules Parse Dashboard's Jobs page reads and writes, as parse-server 9.10.

Schedules are ``_JobSchedule`` objects (``jobName``, ``description``, ``params``, ``startAfter``,
``daysOfWeek``, ``timeOfDay``, ``repeatMinutes``, ``lastRun``). Like parse-server, parsectl only stores
them: running a schedule is left to an external scheduler (parse-server has none either); a job runs
with ``POST /jobs/<name>``. All routes need the master key.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from parsectl.model import errors, query
from parsectl.model.errors import HTTPError, ParseError
from parsectl.server.auth import Auth
from parsectl.server.http import Response

if TYPE_CHECKING:
    from parsectl.server.rest import RestService
    from parsectl.server.routes import Request, Router

CLASS_NAME = "_JobSchedule"
_ALL = 1_000_000  # parse-server reads every schedule (no limit)


def _require_master(request: Request) -> None:
    if not request.auth.master:  # parse-server's sanitized promiseEnforceMasterKeyAccess answer
        raise HTTPError(403, "Permission denied")


class JobScheduleAPI:
    def __init__(self, rest: RestService) -> None:
        self.rest = rest

    def _deployed(self) -> list[str]:
        cloud = self.rest.cloud
        return list(cloud.cloud.jobs) if cloud is not None else []

    async def _schedules(self, auth: Auth) -> list[dict[str, Any]]:
        found = await self.rest.find(auth, CLASS_NAME, query.FindOptions(limit=_ALL))
        return found["results"]

    def _schedule_body(self, request: Request) -> dict[str, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        schedule = body.get("job_schedule")
        if not isinstance(schedule, dict):
            raise ParseError(errors.INVALID_JSON, "job_schedule must be an object")
        name = schedule.get("jobName")
        if name and name not in self._deployed():
            raise ParseError(errors.INTERNAL_SERVER_ERROR, "Cannot Schedule a job that is not deployed")
        schedule = dict(schedule)
        if "startAfter" not in schedule:
            schedule["startAfter"] = _now_iso()
        return schedule

    async def list(self, request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return Response.json(await self._schedules(request.auth))

    async def data(self, request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        schedules = await self._schedules(request.auth)
        return Response.json({"in_use": [s.get("jobName") for s in schedules], "jobs": self._deployed()})

    async def create(self, request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        object_id, body = await self.rest.create(request.auth, CLASS_NAME, self._schedule_body(request))
        location = f"{request.base_url}/classes/{CLASS_NAME}/{object_id}"
        return Response.json(body, 201, [(b"location", location.encode())])

    async def edit(self, request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return Response.json(await self.rest.update(request.auth, CLASS_NAME, args["objectId"],
                                                    self._schedule_body(request)))

    async def delete(self, request: Request, args: dict[str, str]) -> Response:
        _require_master(request)
        return Response.json(await self.rest.delete(request.auth, CLASS_NAME, args["objectId"]))


def _now_iso() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def register_routes(router: Router) -> None:
    api = JobScheduleAPI(router.rest)
    router.add("GET", r"/cloud_code/jobs", api.list)
    router.add("GET", r"/cloud_code/jobs/data", api.data)
    router.add("POST", r"/cloud_code/jobs", api.create)
    router.add("PUT", r"/cloud_code/jobs/(?P<objectId>[^/]+)", api.edit)
    router.add("DELETE", r"/cloud_code/jobs/(?P<objectId>[^/]+)", api.delete)
