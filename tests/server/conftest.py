"""In-process tests of the ASGI app (no subprocess, no network): fast, run with ``-m "not slow"``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parsectl.server import ParseServer, mounted


class Client:
    """A synchronous façade over httpx's ASGI transport, with Parse headers filled in."""

    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    def request(self, method: str, path: str, *, master: bool = False, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        all_headers = {"X-Parse-Application-Id": "test"}
        if master:
            all_headers["X-Parse-Master-Key"] = "test"
        all_headers.update(headers or {})
        return self.loop.run_until_complete(
            self.http.request(method, "/parse" + path, headers=all_headers, **kwargs))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()


def make_client(tmp_path: Path, **options: Any) -> Client:
    api = ParseServer(app_id="test", master_key="test", database_uri=f"sqlite:///{tmp_path / 'parse.db'}",
                      **options)
    return Client(mounted(api))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    c = make_client(tmp_path)
    yield c
    c.close()
