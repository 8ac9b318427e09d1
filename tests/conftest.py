"""Shared fixtures. The server fixtures start each server once per test session:

* ``pg_uri``: a private PostgreSQL 15 cluster (tests.support.pg)
* ``reference_server``: node parse-server 9.10 on that cluster (tests/js/reference-server.js)
* ``parsectl_server``: ``parsectl serve`` on embedded SQLite in a temp data dir
* ``server``: parametrized over both, for tests that hold every server to the same expectations
* ``sdk_report``: runs the JS SDK scenarios (tests/js/scenario.js) once per server and caches the report

A missing prerequisite (node, npm, PostgreSQL binaries) makes these fixtures fail with a message saying
what is missing; nothing is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.mongo import MongoServer, mongo_server
from tests.support.parsectl_proc import parsectl_server as _parsectl_server
from tests.support.pg import PgCluster, pg_cluster
from tests.support.reference import reference_server as _reference_server
from tests.support.sdk import run_sdk
from tests.support.servers import RunningServer

SERVER_KINDS = [pytest.param("reference", marks=pytest.mark.reference), "parsectl",
                pytest.param("parsectl_pg", marks=pytest.mark.reference), "parsectl_mongo"]
PARSECTL_KINDS = ["parsectl", pytest.param("parsectl_pg", marks=pytest.mark.reference), "parsectl_mongo"]


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    with pg_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_uri(pg: PgCluster) -> str:
    return pg.uri


@pytest.fixture(scope="session")
def mongo() -> Iterator[MongoServer]:
    """SecantusDB (a MongoDB-wire server) for the session, or the MongoDB at $PARSECTL_TEST_MONGODB_URI."""
    with mongo_server() as server:
        yield server


@pytest.fixture
def mongo_uri(mongo: MongoServer) -> str:
    """A ``mongodb://`` URI naming a fresh database for this test."""
    return mongo.database_uri()


@pytest.fixture(scope="session")
def reference_server(pg_uri: str) -> Iterator[RunningServer]:
    with _reference_server(pg_uri) as server:
        yield server


@pytest.fixture(scope="session")
def parsectl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with _parsectl_server(data_dir=tmp_path_factory.mktemp("parsectl-data")) as server:
        yield server


@pytest.fixture(scope="session")
def parsectl_pg_server(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``parsectl serve`` on its own database of the same PostgreSQL cluster as the reference."""
    pg.psql("CREATE DATABASE parsectl_e2e", database="postgres")
    uri = pg.uri.rsplit("/", 1)[0] + "/parsectl_e2e"
    with _parsectl_server(data_dir=tmp_path_factory.mktemp("parsectl-pg-data"), database_uri=uri) as server:
        yield server


@pytest.fixture(scope="session")
def parsectl_mongo_server(mongo: MongoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``parsectl serve`` on MongoDB (SecantusDB, or PARSECTL_TEST_MONGODB_URI)."""
    with _parsectl_server(data_dir=tmp_path_factory.mktemp("parsectl-mongo-data"),
                          database_uri=mongo.database_uri()) as server:
        yield server


@pytest.fixture(params=PARSECTL_KINDS)
def any_parsectl_server(request: pytest.FixtureRequest) -> RunningServer:
    """Each test using this runs against parsectl on SQLite and on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> RunningServer:
    """Each test using this runs once against the reference and once against parsectl."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def sdk_report() -> Callable[[RunningServer], dict]:
    """sdk_report(server) -> the JS SDK scenario report for that server; all scenarios run once per session."""
    cache: dict[str, dict] = {}

    def get(srv: RunningServer) -> dict:
        if srv.server_url not in cache:
            cache[srv.server_url] = run_sdk(srv.server_url, None, srv.app_id, srv.master_key)
        return cache[srv.server_url]

    return get
