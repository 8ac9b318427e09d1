"""Parse.Push with the official JS SDK (tests/js/push.js) against `parsectl serve` and stand-in APNs/FCM."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import JS_DIR, SetupError
from tests.support.parsectl_proc import parsectl_server
from tests.support.push_standins import TOPIC, APNsStandIn, FCMStandIn, make_credentials, push_option
from tests.support.reference import ensure_npm_ci, node_bin

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], APNsStandIn, FCMStandIn]]:
    ensure_npm_ci()
    work = tmp_path_factory.mktemp("push-e2e")
    creds = make_credentials(work / "creds")
    with APNsStandIn(creds) as apns, FCMStandIn(creds) as fcm:
        config = work / "config.json"
        config.write_text(json.dumps({"push": push_option(creds, apns, fcm)}))
        with parsectl_server(data_dir=Path(work / "data"), extra_args=["--config", str(config)]) as server:
            env = {**os.environ, "PARSE_SERVER_URL": server.server_url, "PARSE_APP_ID": server.app_id,
                   "PARSE_MASTER_KEY": server.master_key, "PUSH_TOPIC": TOPIC}
            proc = subprocess.run([node_bin(), str(JS_DIR / "push.js")], capture_output=True, text=True,
                                  timeout=120, env=env, cwd=JS_DIR)
            if proc.returncode != 0:
                raise SetupError(f"push.js failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n"
                                 f"--- server log ---\n{server.log_tail(3000)}")
            yield json.loads(proc.stdout.strip().splitlines()[-1]), apns, fcm


def ok(report: dict[str, Any], name: str) -> Any:
    entry = report[name]
    assert entry["ok"], f"{name} failed: {entry['error']}"
    return entry["result"]


def test_send_by_channels(run: tuple[dict[str, Any], APNsStandIn, FCMStandIn]) -> None:
    report, apns, fcm = run
    assert ok(report, "installations") == 3
    got = ok(report, "send_channels")
    assert got["status"] == "succeeded" and got["numSent"] == 2 and got["source"] == "rest"
    assert got["sentPerType"] == {"ios": 1, "android": 1}
    assert json.loads(got["query"]) == {"channels": {"$in": ["sdk"]}}
    ios = [r for r in apns.requests if r.device_token == "sdk-ios-1"]
    assert len(ios) == 1 and ios[0].payload["aps"] == {"alert": {"body": "from the sdk"}, "badge": 2}
    assert ios[0].http_version == "2"
    [android] = [m for m in fcm.messages if m["token"] == "sdk-android-1"]
    assert json.loads(android["android"]["data"]["data"]) == {"alert": "from the sdk"}


def test_send_by_query(run: tuple[dict[str, Any], APNsStandIn, FCMStandIn]) -> None:
    report, apns, _ = run
    got = ok(report, "send_query")
    assert got["status"] == "succeeded" and got["numSent"] == 1
    assert json.loads(got["query"]) == {"deviceToken": "sdk-ios-2"}
    [req] = [r for r in apns.requests if r.device_token == "sdk-ios-2"]
    assert req.payload["aps"] == {"alert": {"body": "by query"}, "content-available": 1}


def test_badge_increment_is_stored(run: tuple[dict[str, Any], APNsStandIn, FCMStandIn]) -> None:
    report, _, _ = run
    assert ok(report, "badges") == [["sdk-android-1", 1], ["sdk-ios-1", 2], ["sdk-ios-2", None]]


def test_without_master_key(run: tuple[dict[str, Any], APNsStandIn, FCMStandIn]) -> None:
    report, _, _ = run
    entry = report["without_master"]
    assert not entry["ok"]
    assert entry["error"]["message"] == "Permission denied"
