"""Geo and full-text queries through the official Parse JS SDK (tests/js/geo.js) against ``parsectl serve``.

geo.js seeds its own classes and runs near / withinKilometers / withinMiles / withinRadians / withinGeoBox /
withinPolygon / polygonContains / fullText / sortByTextScore; each test holds one server (SQLite,
PostgreSQL without PostGIS, MongoDB) to explicit expectations. node parse-server is not the reference
here: on PostgreSQL it needs PostGIS for these queries (it answers 500 without it), and SecantusDB, the
MongoDB test server, lacks $text and distance ordering (those checks skip there, see the README).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import JS_DIR, SetupError
from tests.support.mongo import ENV_URI
from tests.support.reference import ensure_npm_ci, node_bin
from tests.support.servers import RunningServer

pytestmark = pytest.mark.slow

SERVERS = ["parsectl_server", pytest.param("parsectl_pg_server", marks=pytest.mark.reference),
           "parsectl_mongo_server"]
_reports: dict[str, dict] = {}


@pytest.fixture(params=SERVERS)
def geo_server(request: pytest.FixtureRequest) -> tuple[str, RunningServer]:
    return request.param, request.getfixturevalue(request.param)


def report_for(srv: RunningServer) -> dict:
    if srv.server_url not in _reports:
        ensure_npm_ci()
        env = dict(os.environ, PARSE_SERVER_URL=srv.server_url, PARSE_APP_ID=srv.app_id,
                   PARSE_MASTER_KEY=srv.master_key, SCENARIO_TAG=os.urandom(3).hex())
        proc = subprocess.run([node_bin(), str(JS_DIR / "geo.js")], capture_output=True, text=True,
                              timeout=120, env=env, cwd=JS_DIR)
        if proc.returncode != 0:
            raise SetupError(f"geo.js against {srv.server_url} failed:\n{proc.stderr[-4000:]}")
        _reports[srv.server_url] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _reports[srv.server_url]


def result(srv: RunningServer, name: str) -> dict:
    entry = report_for(srv)["scenarios"][name]
    if not entry["ok"]:
        pytest.fail(f"geo.js scenario {name} failed: {entry['error']}\n{srv.log_tail(2000)}")
    return entry["result"]


def secantus(kind: str) -> bool:
    return kind == "parsectl_mongo_server" and not os.environ.get(ENV_URI)


def test_near(geo_server: tuple[str, RunningServer]) -> None:
    kind, srv = geo_server
    r = result(srv, "near")
    assert r["nearCount"] == 6
    assert r["nearOrdered"] == ["LA", "NYC", "Oakland"]  # an explicit order wins over distance
    if secantus(kind):
        assert len(r["near"]) == 4 and len(r["nearSkip"]) == 2  # SecantusDB does not order by distance
        return
    assert r["near"] == ["SF", "Oakland", "SanJose", "Sacramento"]
    assert r["nearSkip"] == ["Oakland", "SanJose"]


def test_within_distance(geo_server: tuple[str, RunningServer]) -> None:
    kind, srv = geo_server
    r = result(srv, "within_distance")
    expected = {"km": ["SF", "Oakland", "SanJose"], "miles": ["SF", "Oakland", "SanJose", "Sacramento"],
                "radians": ["SF", "Oakland"]}
    for key, names in expected.items():
        assert (sorted(r[key]) == sorted(names)) if secantus(kind) else (r[key] == names), key
    assert r["kmUnsorted"] == ["Oakland", "SF", "SanJose"]
    assert r["kmCount"] == 3


def test_box_polygon(geo_server: tuple[str, RunningServer]) -> None:
    _, srv = geo_server
    r = result(srv, "box_polygon")
    assert r["box"] == ["LA", "Oakland", "SF", "Sacramento", "SanJose"]
    assert r["polygon"] == ["Oakland", "SF", "SanJose"]
    assert r["polygonContains"] == ["Oakland", "SF"]
    assert r["polygonContainsNone"] == []
    assert r["tooFewPoints"] == {"error": {
        "code": 107, "message": "bad $geoWithin value; $polygon should contain at least 3 GeoPoints"}}


def test_full_text(geo_server: tuple[str, RunningServer]) -> None:
    kind, srv = geo_server
    if secantus(kind):
        pytest.skip(f"SecantusDB has no $text operator nor text indexes; runs against a real MongoDB with {ENV_URI}")
    r = result(srv, "full_text")
    assert r["coffee"] == ["NYC", "Oakland", "SF"] and r["language"] == r["coffee"] and r["count"] == 3
    assert r["stem"] == ["SF"] and r["phrase"] == ["SF"]
    assert r["diacritics"] == ["LA"] and r["diacriticSensitive"] == []
    assert r["caseSensitive"] == ["Oakland"]
    assert r["byScoreCount"] == 3 and r["byScoreFirst"] is True and r["scoresDescending"] is True
