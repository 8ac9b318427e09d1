"""/cloud_code/jobs (Parse Dashboard's Jobs page) against node parse-server 9.10 and parsectl, on servers
without Cloud Code jobs (the in-process tests in tests/server/test_dashboard_api.py cover deployed jobs)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow


def call(server: RunningServer, method: str, path: str, body: Any = None, master: bool = True) -> tuple[int, Any]:
    r = httpx.request(method, server.server_url + path, headers=server.headers(master=master), json=body, timeout=10)
    return r.status_code, r.json()


def test_job_schedules_without_jobs(server: RunningServer) -> None:
    assert call(server, "GET", "/cloud_code/jobs", master=False) == (403, {"error": "Permission denied"})
    assert call(server, "POST", "/cloud_code/jobs", {"job_schedule": {}}, master=False) == (
        403, {"error": "Permission denied"})
    assert call(server, "GET", "/cloud_code/jobs/data") == (200, {"in_use": [], "jobs": []})
    status, body = call(server, "GET", "/cloud_code/jobs")
    assert status == 200 and isinstance(body, list)
    assert call(server, "POST", "/cloud_code/jobs", {"job_schedule": {"jobName": "nightly"}}) == (
        500, {"code": 1, "error": "Cannot Schedule a job that is not deployed"})
    assert call(server, "PUT", "/cloud_code/jobs/abc", {"job_schedule": {"jobName": "nightly"}}) == (
        500, {"code": 1, "error": "Cannot Schedule a job that is not deployed"})
