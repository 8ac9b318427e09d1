"""`parsectl serve` as a user runs it: option sources, the generated master key, workers, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from tests.support.parsectl_proc import parsectl_command, parsectl_server
from tests.support.servers import wait_healthy

pytestmark = pytest.mark.slow


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PARSE_SERVER_")}
    full_env.update(env or {})
    return subprocess.run([*parsectl_command(), *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_has_examples() -> None:
    r = run_cli("serve", "--help")
    assert r.returncode == 0
    assert "Examples" in r.stdout and "--workers" in r.stdout and "PARSE_SERVER_APPLICATION_ID" in r.stdout


@pytest.mark.parametrize(("config", "message"), [
    ({"appId": "a", "masterKey": "m", "noSuchOption": 1}, "unknown option 'noSuchOption'"),
    ({"appId": "a", "masterKey": "m", "maxLimit": -5}, "option 'maxLimit'"),
    ({"appId": "a", "masterKey": "m", "masterKeyIps": ["not-an-ip"]}, "option 'masterKeyIps'"),
])
def test_bad_config_fails_at_startup_naming_the_option(tmp_path: Path, config: dict, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = run_cli("serve", "--config", str(path), "--data-dir", str(tmp_path / "d"), "--port", str(free_port()))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    r = run_cli("serve", "--app-id", "a", "--master-key", "m", "--data-dir", str(tmp_path),
                "--database-uri", f"postgres://u:secret@127.0.0.1:{port}/db", "--port", str(free_port()))
    assert r.returncode == 69
    assert "cannot connect to PostgreSQL" in r.stderr and "secret" not in r.stderr + r.stdout


def test_flags_beat_environment_beat_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("appId: fromfile\nmasterKey: filekey\nmaxLimit: 3\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARSE_SERVER_")}
    env.update(PARSE_SERVER_APPLICATION_ID="fromenv", PARSE_SERVER_MASTER_KEY="envkey")
    proc = subprocess.Popen([*parsectl_command(), "serve", "--config", str(config), "--master-key", "flagkey",
                             "--port", str(port), "--data-dir", str(tmp_path / "d"), "--output", "json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/parse"
        wait_healthy(proc, url, 20, None, "parsectl serve")
        headers = {"X-Parse-Application-Id": "fromenv", "X-Parse-Master-Key": "flagkey"}
        for i in range(5):
            assert httpx.post(f"{url}/classes/T", json={"i": i}, headers=headers).status_code == 201
        got = httpx.get(f"{url}/classes/T", headers=headers).json()["results"]
        assert len(got) == 3  # maxLimit from the file still applies
        assert httpx.get(f"{url}/classes/T", headers={"X-Parse-Application-Id": "fromfile"}).status_code == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    report = json.loads(proc.stdout.read().splitlines()[0])
    assert report["appId"] == "fromenv" and "masterKey" not in report


def test_generated_master_key_is_kept_and_printed_once(tmp_path: Path) -> None:
    outputs = []
    for _ in range(2):
        port = free_port()
        proc = subprocess.Popen([*parsectl_command(), "serve", "--port", str(port), "--data-dir", str(tmp_path),
                                 "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}/parse"
        try:
            wait_healthy(proc, url, 20, None, "parsectl serve")
            key = (tmp_path / "master.key").read_text().strip()
            r = httpx.get(f"{url}/serverInfo", headers={"X-Parse-Application-Id": "parsectl",
                                                         "X-Parse-Master-Key": key})
            assert r.status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        outputs.append(json.loads(proc.stdout.read().splitlines()[0]))
    assert len(outputs[0]["masterKey"]) >= 32 and outputs[0]["masterKey"] == key
    assert "masterKey" not in outputs[1]
    assert oct((tmp_path / "master.key").stat().st_mode & 0o777) == "0o600"


def test_workers_share_the_port_and_increments_stay_exact(tmp_path: Path) -> None:
    with parsectl_server(data_dir=tmp_path, extra_args=["--workers", "2"]) as srv:
        h = srv.headers(master=True)
        oid = httpx.post(f"{srv.server_url}/classes/Counter", json={"n": 0}, headers=h).json()["objectId"]

        def bump(_: int) -> int:
            with httpx.Client() as c:  # a new connection each time, so both workers take some
                return c.put(f"{srv.server_url}/classes/Counter/{oid}",
                             json={"n": {"__op": "Increment", "amount": 1}}, headers=h).status_code

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(bump, range(100))) == {200}
        assert httpx.get(f"{srv.server_url}/classes/Counter/{oid}", headers=h).json()["n"] == 100
