"""allowClientClassCreation: off by default (v9), on with ALLOW_CCC / --allow-client-class-creation.

Starts a second reference (on its own database in the session's PostgreSQL cluster) and a second parsectl,
both with client class creation allowed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.compare import normalize
from tests.support.parsectl_proc import parsectl_server
from tests.support.pg import PgCluster
from tests.support.reference import reference_server
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_ccc(pg: PgCluster) -> Iterator[RunningServer]:
    pg.psql("CREATE DATABASE parse_ccc", database="postgres")
    uri = pg.uri.rsplit("/", 1)[0] + "/parse_ccc"
    with reference_server(uri, allow_client_class_creation=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def parsectl_ccc() -> Iterator[RunningServer]:
    with parsectl_server(allow_client_class_creation=True) as srv:
        yield srv


@pytest.fixture(params=[pytest.param("reference", marks=pytest.mark.reference), "parsectl"])
def ccc_server(request: pytest.FixtureRequest) -> RunningServer:
    return request.getfixturevalue(f"{request.param}_ccc")


def test_client_can_create_class_when_allowed(ccc_server: RunningServer):
    base = ccc_server.server_url
    r = httpx.post(f"{base}/classes/ClientMade", json={"a": 1}, headers=ccc_server.headers(), timeout=10)
    assert r.status_code == 201, r.text
    assert normalize(r.json()) == {"objectId": "<id>", "createdAt": "<ts>"}
    r = httpx.get(f"{base}/classes/ClientMade", headers=ccc_server.headers(), timeout=10)
    assert r.status_code == 200, r.text
    assert [o["a"] for o in r.json()["results"]] == [1]
    # Unknown classes can be queried by clients too (empty result instead of 119).
    r = httpx.get(f"{base}/classes/NeverMade", headers=ccc_server.headers(), timeout=10)
    assert (r.status_code, r.json()) == (200, {"results": []})


def test_client_cannot_create_class_by_default(server: RunningServer):
    r = httpx.post(f"{server.server_url}/classes/ClientMade", json={"a": 1}, headers=server.headers(), timeout=10)
    assert (r.status_code, r.json()) == (400, {"code": 119, "error": "Permission denied"})
