"""``parsectl serve --reload``: edited Cloud Code takes effect without a restart; broken code does not."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.parsectl_proc import parsectl_server

pytestmark = pytest.mark.slow

CODE = '''
from parsectl.cloud import Cloud
from helper import WORD

cloud = Cloud()


@cloud.define("greet")
def greet(request):
    return "{greeting} " + WORD
'''


def call(srv, name: str) -> httpx.Response:
    return httpx.post(f"{srv.server_url}/functions/{name}", headers=srv.headers(), json={}, timeout=10)


def wait_for(srv, expected: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = call(srv, "greet").json().get("result", "")
        if last == expected:
            return last
        time.sleep(0.2)
    return last


def test_reload_picks_up_edits_and_keeps_old_code_on_errors(tmp_path: Path) -> None:
    code_dir = tmp_path / "cloud"
    code_dir.mkdir()
    main = code_dir / "main.py"
    helper = code_dir / "helper.py"
    helper.write_text('WORD = "world"\n')
    main.write_text(CODE.format(greeting="hello"))
    with parsectl_server(extra_args=["--cloud", str(main), "--reload"]) as srv:
        assert call(srv, "greet").json() == {"result": "hello world"}
        time.sleep(1.1)  # a new modification time, whatever the file system's resolution
        main.write_text(CODE.format(greeting="bonjour"))
        assert wait_for(srv, "bonjour world") == "bonjour world"
        helper.write_text('WORD = "le monde"\n')  # a neighbouring module counts too
        assert wait_for(srv, "bonjour le monde") == "bonjour le monde"
        main.write_text("def broken(:\n")
        time.sleep(3)
        assert call(srv, "greet").json() == {"result": "bonjour le monde"}
        log = srv.log_tail()
        assert "Cloud Code reload failed; the previous code stays in service" in log
        assert "SyntaxError" in log
        main.write_text(CODE.format(greeting="hola"))
        assert wait_for(srv, "hola le monde") == "hola le monde"


def test_reload_needs_cloud_code(tmp_path: Path) -> None:
    import subprocess

    from tests.support.parsectl_proc import parsectl_command

    proc = subprocess.run([*parsectl_command(), "serve", "--reload", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--reload needs Cloud Code" in proc.stderr
