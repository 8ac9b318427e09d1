"""Run the Parse JS SDK scenarios (tests/js/scenario.js) against a server and return their JSON report."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable

from . import JS_DIR, SetupError
from .reference import ensure_npm_ci, node_bin


def list_scenarios() -> list[str]:
    ensure_npm_ci()
    proc = subprocess.run([node_bin(), str(JS_DIR / "scenario.js"), "--list"], capture_output=True, text=True,
                          timeout=60, cwd=JS_DIR)
    if proc.returncode != 0:
        raise SetupError(f"scenario.js --list failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def run_sdk(
    server_url: str,
    scenario_names: Iterable[str] | None = None,
    app_id: str = "test",
    master_key: str = "test",
    *,
    tag: str | None = None,
    timeout: float = 180.0,
) -> dict:
    """Run the named scenarios (all when None) with the JS SDK; return the parsed report.

    The report is {"sdkVersion", "serverURL", "scenarios": {name: {"ok", "ms", "result" | "error"}}}.
    A scenario's failure is part of the report; a crash of the runner itself raises SetupError.
    """
    ensure_npm_ci()
    env = dict(os.environ)
    env.update(
        PARSE_SERVER_URL=server_url, PARSE_APP_ID=app_id, PARSE_MASTER_KEY=master_key,
        SCENARIOS=",".join(scenario_names or []),
    )
    if tag:
        env["SCENARIO_TAG"] = tag
    try:
        proc = subprocess.run(
            [node_bin(), str(JS_DIR / "scenario.js")], capture_output=True, text=True, timeout=timeout, env=env,
            cwd=JS_DIR,
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"scenario.js against {server_url} timed out after {timeout}s\n{exc.stderr}") from None
    if proc.returncode != 0:
        raise SetupError(f"scenario.js against {server_url} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SetupError(f"scenario.js printed no JSON report:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
