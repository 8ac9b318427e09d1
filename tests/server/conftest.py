"""In-process tests of the ASGI app (no subprocess, no network): fast, run with ``-m "not slow"``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parsectl.server import ParseServer, mounted


class Client:
    """A synchronous façade over httpx's ASGI transport, with Parse headers filled in."""

    def __init__(self, api: ParseServer) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=mounted(api)), base_url="http://testserver")

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
        self.loop.run_until_complete(self.api.stop())
        self.loop.close()


_databases = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow),
                        pytest.param("mongodb", marks=pytest.mark.slow)])
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind parsectl serves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'parse.db'}"
    if request.param == "mongodb":
        return request.getfixturevalue("mongo_uri")
    pg = request.getfixturevalue("pg")
    name = f"t{next(_databases)}"
    pg.psql(f"CREATE DATABASE {name}", database="postgres")
    return pg.uri.rsplit("/", 1)[0] + "/" + name


def make_client(database_uri: str, **options: Any) -> Client:
    return Client(ParseServer(app_id="test", master_key="test", database_uri=database_uri, **options))


@pytest.fixture
def client(database_uri: str) -> Iterator[Client]:
    c = make_client(database_uri)
    yield c
    c.close()
