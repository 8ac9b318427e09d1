"""The official Parse Dashboard (npm parse-dashboard) against `parsectl serve`, in headless Chromium.

One module fixture starts `parsectl serve` (embedded SQLite, a Python cloud file defining the job "tally"),
seeds a class and a config parameter over REST, starts parse-dashboard on 127.0.0.1 and runs the
Playwright scenarios of tests/js/dashboard.js once. Each test then checks one scenario's outcome through
the REST API, independently of what the dashboard showed. Screenshots are kept in tests/artifacts/dashboard/.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import REPO_ROOT
from tests.support.dashboard import dashboard_server, ensure_chromium, run_dashboard
from tests.support.parsectl_proc import parsectl_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow

ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "dashboard"

CLOUD = '''
import json

from parsectl.cloud import Cloud

cloud = Cloud()


@cloud.job("tally")
async def tally(request):
    request.message("tallying")
    return "tallied " + json.dumps(request.params.get("input"))
'''


@dataclass
class DashboardRun:
    server: RunningServer
    report: dict[str, Any]
    seeded: dict[str, str]  # title -> objectId

    def api(self, method: str, path: str, master: bool = True, **kwargs: Any) -> Any:
        r = httpx.request(method, self.server.server_url + path, headers=self.server.headers(master=master),
                          timeout=10, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    def scenario(self, name: str) -> dict[str, Any]:
        entry = self.report["scenarios"][name]
        if not entry["ok"]:
            pytest.fail(f"dashboard scenario {name} failed: {entry['error']}\nscreenshots: {entry['screenshots']}\n"
                        f"--- parsectl log ---\n{self.server.log_tail(3000)}")
        return entry["result"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardRun]:
    chromium = ensure_chromium()
    cloud_file = tmp_path_factory.mktemp("dashboard-cloud") / "main.py"
    cloud_file.write_text(CLOUD)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    with parsectl_server(extra_args=["--cloud", str(cloud_file)]) as server:
        seeded: dict[str, str] = {}
        for title, score in (("alpha", 1), ("beta", 2)):
            r = httpx.post(f"{server.server_url}/classes/Game", headers=server.headers(master=True),
                           json={"title": title, "score": score}, timeout=10)
            assert r.status_code == 201, r.text
            seeded[title] = r.json()["objectId"]
        r = httpx.put(f"{server.server_url}/config", headers=server.headers(master=True),
                      json={"params": {"greeting": "hi", "limit": 5}}, timeout=10)
        assert r.status_code == 200, r.text
        with dashboard_server(server.server_url, server.app_id, server.master_key) as url:
            report = run_dashboard(url, chromium, ARTIFACTS)
        print(f"\nParse Dashboard screenshots: {ARTIFACTS}")
        yield DashboardRun(server, report, seeded)


def test_class_list(run: DashboardRun) -> None:
    assert run.scenario("classList") == {"counts": {"_Role": "0", "_User": "0", "Game": "2"}}


def test_browse_rows(run: DashboardRun) -> None:
    assert run.scenario("browseRows") == {"seen": ["alpha", "beta"]}


def test_add_row_and_edit_cell(run: DashboardRun) -> None:
    run.scenario("addAndEditRow")
    added = run.api("GET", "/classes/Game", params={"where": json.dumps({"title": "from-dashboard"})})["results"]
    assert len(added) == 1 and "score" not in added[0]
    edited = run.api("GET", f"/classes/Game/{run.seeded['beta']}")
    assert edited["title"] == "beta-edited" and edited["score"] == 2
    assert edited["updatedAt"] > edited["createdAt"]


def test_add_column(run: DashboardRun) -> None:
    run.scenario("addColumn")
    assert run.api("GET", "/schemas/Game")["fields"]["level"] == {"type": "Number"}


def test_change_class_level_permissions(run: DashboardRun) -> None:
    run.scenario("changeClp")
    clp = run.api("GET", "/schemas/Game")["classLevelPermissions"]
    assert clp["addField"] == {}
    for operation in ("find", "count", "get", "create", "update", "delete"):
        assert clp[operation] == {"*": True}, operation
    # and the server enforces it: a client can no longer add a field to Game
    r = httpx.post(f"{run.server.server_url}/classes/Game", headers=run.server.headers(),
                   json={"brandNew": 1}, timeout=10)
    assert r.json()["code"] == 119


def test_edit_config(run: DashboardRun) -> None:
    run.scenario("editConfig")
    config = run.api("GET", "/config")
    assert config["params"] == {"greeting": "hello from the dashboard", "limit": 5}
    assert config["masterKeyOnly"] == {"greeting": True, "limit": False}
    assert run.api("GET", "/config", master=False)["params"] == {"limit": 5}


def test_run_job(run: DashboardRun) -> None:
    run.scenario("runJob")
    rows = run.api("GET", "/classes/_JobStatus", params={"where": json.dumps({"jobName": "tally"})})["results"]
    assert len(rows) == 1
    assert rows[0]["status"] == "succeeded" and rows[0]["source"] == "api"
    assert rows[0]["message"] == 'tallied {"n": 7}'


def test_schedule_job(run: DashboardRun) -> None:
    run.scenario("scheduleJob")
    schedules = run.api("GET", "/cloud_code/jobs")
    assert len(schedules) == 1
    assert {k: schedules[0][k] for k in ("jobName", "description", "params")} == {
        "jobName": "tally", "description": "nightly tally", "params": '{"n": 1}'}
    assert run.api("GET", "/cloud_code/jobs/data") == {"in_use": ["tally"], "jobs": ["tally"]}


def test_screenshots_and_no_api_errors(run: DashboardRun) -> None:
    shots = [Path(p) for entry in run.report["scenarios"].values() for p in entry["screenshots"]]
    assert len(shots) >= 12
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, shot
    # parsectl answered every request the dashboard sent without an error
    assert run.report["apiErrors"] == []
