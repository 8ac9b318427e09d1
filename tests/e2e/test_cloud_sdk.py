"""A sample app's Cloud Code — functions with validators, errors, save/find/delete triggers and a job — driven
through the official JS SDK (tests/js/cloud.js): the Python code (tests/fixtures/sample_app/cloud/main.py) on
`parsectl serve`, and the same app in JavaScript (main.js) on node parse-server 9.10. Both servers must answer
what the app promises, and the same as each other.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import JS_DIR, REPO_ROOT, SetupError
from tests.support.parsectl_proc import parsectl_server
from tests.support.pg import PgCluster
from tests.support.reference import ensure_npm_ci, node_bin, reference_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow

APP = REPO_ROOT / "tests" / "fixtures" / "sample_app" / "cloud"


def run_app(srv: RunningServer) -> dict:
    ensure_npm_ci()
    env = dict(os.environ, PARSE_SERVER_URL=srv.server_url, PARSE_APP_ID=srv.app_id, PARSE_MASTER_KEY=srv.master_key)
    proc = subprocess.run([node_bin(), str(JS_DIR / "cloud.js")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=JS_DIR)
    if proc.returncode != 0:
        raise SetupError(f"cloud.js against {srv.server_url} failed:\n{proc.stderr[-4000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])["scenarios"]
    for name, entry in report.items():
        assert entry["ok"], f"{name} failed against {srv.kind}: {entry['error']}\n{srv.log_tail(2000)}"
    return {name: entry["result"] for name, entry in report.items()}


@pytest.fixture(scope="module")
def parsectl_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    with parsectl_server(data_dir=tmp_path_factory.mktemp("cloud-app"),
                         extra_args=["--cloud", str(APP / "main.py")]) as srv:
        return run_app(srv)


@pytest.fixture(scope="module")
def reference_report(pg: PgCluster) -> Iterator[dict]:
    pg.psql("DROP DATABASE IF EXISTS cloud_app", database="postgres")
    pg.psql("CREATE DATABASE cloud_app", database="postgres")
    with reference_server(pg.uri.rsplit("/", 1)[0] + "/cloud_app", cloud=APP / "main.js") as srv:
        yield run_app(srv)


def err(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def check(report: dict) -> None:
    f = report["functions"]
    assert f["hello"] == {"value": "Hello Ada!"}
    assert f["helloMissing"] == err(142, "Validation failed. Please specify data for name.")
    assert f["helloWrongType"] == err(142, "Validation failed. Invalid type for name. Expected: string")
    assert f["whoamiAnonymous"] == err(142, "Validation failed. Please login to continue.")
    assert f["adminWithoutMaster"] == err(142, "Validation failed. Master key is required to complete this request.")
    assert f["adminWithMaster"] == {"value": {"ok": True}}
    assert f["refuse"] == err(3001, "the shop is closed")
    assert f["crash"] == err(141, "something broke")
    assert f["unknown"] == err(141, 'Invalid function: "noSuchFunction"')

    u = report["withUser"]
    assert u["who"] == {"value": {"username": "shopper", "master": False}}
    assert u["afterLogout"] == err(142, "Validation failed. Please login to continue.")

    t = report["triggers"]
    assert t["saved"] == {"total": 15, "status": "new", "qty": 3}  # beforeSave's fields come back to the SDK
    assert t["noQty"] == err(142, "Validation failed. Please specify data for qty.")
    assert t["badQty"] == err(142, "qty must be positive")
    assert t["wrongType"] == err(142, "Validation failed. Invalid type for qty. Expected: number")
    assert t["updated"] == {"total": 4, "qty": 4}
    assert t["visible"] == [{"qty": 2, "total": 2, "status": "new"}, {"qty": 3, "total": 15, "status": "new"},
                            {"qty": 4, "total": 4, "status": "new"}]  # beforeFind hides hidden orders
    assert len(t["all"]) == 4  # not from the master key
    assert t["getHidden"] == err(101, "Object not found.")
    assert t["deletePaid"] == err(3002, "paid orders are kept")
    assert t["deleteOther"] == {"value": {"className": "Order", "hidden": True, "objectId": "<id>", "qty": 1,
                                          "status": "new", "total": 1,
                                          "createdAt": "<ts>", "updatedAt": "<ts>"}}
    assert t["left"] == 3

    j = report["job"]
    assert j == {"status": "succeeded", "message": "tallied today", "jobName": "tally", "source": "api",
                 "hasFinishedAt": True, "unknown": j["unknown"]}
    assert j["unknown"]["error"]["code"] == 141


def test_python_cloud_code_through_the_js_sdk(parsectl_report: dict) -> None:
    check(parsectl_report)


@pytest.mark.reference
def test_the_same_app_on_node_parse_server(reference_report: dict) -> None:
    check(reference_report)


@pytest.mark.reference
def test_parsectl_answers_as_node_parse_server(parsectl_report: dict, reference_report: dict) -> None:
    assert parsectl_report == reference_report
