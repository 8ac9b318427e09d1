"""Endpoints Parse Dashboard relies on beyond the plain REST API: /serverInfo features and the
/cloud_code/jobs schedules of its Jobs page, as parse-server 9.10 answers them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import Client, make_client

CLOUD = '''
from parsectl.cloud import Cloud

cloud = Cloud()


@cloud.job("nightly")
def nightly(request):
    return "ok"


@cloud.job("weekly")
def weekly(request):
    request.message("working")  # a threaded job: the message is written from another thread
    return "ok"


@cloud.job("quick")
async def quick(request):
    request.message("working")
    return "done"
'''


@pytest.fixture
def client(database_uri: str, tmp_path: Path) -> Iterator[Client]:
    cloud_file = tmp_path / "cloud" / "main.py"
    cloud_file.parent.mkdir()
    cloud_file.write_text(CLOUD)
    c = make_client(database_uri, cloud=str(cloud_file))
    yield c
    c.close()


def test_server_info_announces_jobs(client: Client) -> None:
    features = client.request("GET", "/serverInfo", master=True).json()["features"]
    assert features["cloudCode"] == {"jobs": True}


def test_job_schedules(client: Client) -> None:
    for method, path in (("GET", "/cloud_code/jobs"), ("GET", "/cloud_code/jobs/data"),
                         ("POST", "/cloud_code/jobs"), ("PUT", "/cloud_code/jobs/x"),
                         ("DELETE", "/cloud_code/jobs/x")):
        r = client.request(method, path, json={})
        assert (r.status_code, r.json()) == (403, {"error": "Permission denied"}), (method, path)

    assert client.request("GET", "/cloud_code/jobs", master=True).json() == []
    assert client.request("GET", "/cloud_code/jobs/data", master=True).json() == {
        "in_use": [], "jobs": ["nightly", "weekly", "quick"]}

    r = client.request("POST", "/cloud_code/jobs", master=True, json={"job_schedule": {"jobName": "nope"}})
    # node answers code 1 (INTERNAL_SERVER_ERROR), hence HTTP 500, with this message
    assert (r.status_code, r.json()) == (500, {"code": 1, "error": "Cannot Schedule a job that is not deployed"})
    r = client.request("POST", "/cloud_code/jobs", master=True, json={})
    assert r.status_code == 400 and r.json()["code"] == 107

    schedule = {"jobName": "nightly", "description": "every night", "params": '{"n": 1}',
                "daysOfWeek": ["1", "1", "1", "1", "1", "1", "1"], "timeOfDay": "03:00:00.000Z", "repeatMinutes": 60}
    r = client.request("POST", "/cloud_code/jobs", master=True, json={"job_schedule": schedule})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"objectId", "createdAt"}
    assert r.headers["location"].endswith(f"/classes/_JobSchedule/{created['objectId']}")

    listed = client.request("GET", "/cloud_code/jobs", master=True).json()
    assert len(listed) == 1
    row = listed[0]
    assert {k: row[k] for k in schedule} == schedule
    assert row["objectId"] == created["objectId"] and row["startAfter"].endswith("Z")  # filled in as node does
    assert client.request("GET", "/cloud_code/jobs/data", master=True).json() == {
        "in_use": ["nightly"], "jobs": ["nightly", "weekly", "quick"]}

    r = client.request("PUT", f"/cloud_code/jobs/{created['objectId']}", master=True,
                       json={"job_schedule": {"jobName": "weekly", "startAfter": "2030-01-01T00:00:00.000Z"}})
    assert r.status_code == 200 and set(r.json()) == {"updatedAt"}, r.text
    row = client.request("GET", "/cloud_code/jobs", master=True).json()[0]
    assert row["jobName"] == "weekly" and row["startAfter"] == "2030-01-01T00:00:00.000Z"
    r = client.request("PUT", f"/cloud_code/jobs/{created['objectId']}", master=True,
                       json={"job_schedule": {"jobName": "gone"}})
    assert r.json() == {"code": 1, "error": "Cannot Schedule a job that is not deployed"}

    r = client.request("DELETE", f"/cloud_code/jobs/{created['objectId']}", master=True)
    assert (r.status_code, r.json()) == (200, {})
    assert client.request("GET", "/cloud_code/jobs", master=True).json() == []
    r = client.request("DELETE", f"/cloud_code/jobs/{created['objectId']}", master=True)
    assert r.json() == {"code": 101, "error": "Object not found."}


def test_job_schedules_without_cloud_code(tmp_path: Path) -> None:
    c = make_client(f"sqlite:///{tmp_path / 'parse.db'}")
    try:
        assert c.request("GET", "/cloud_code/jobs/data", master=True).json() == {"in_use": [], "jobs": []}
        r = c.request("POST", "/cloud_code/jobs", master=True, json={"job_schedule": {"jobName": "any"}})
        assert r.json() == {"code": 1, "error": "Cannot Schedule a job that is not deployed"}
    finally:
        c.close()


@pytest.mark.parametrize("job, final", [("quick", "done"), ("weekly", "ok")])
def test_job_message_right_before_the_end_does_not_overwrite_the_result(client: Client, job: str, final: str) -> None:
    # The dashboard's Job Status page shows the message: it must be the job's result, not the last
    # progress message written concurrently with the final status.
    for _ in range(5):
        r = client.request("POST", f"/jobs/{job}", master=True, json={})
        status_id = r.headers["x-parse-job-status-id"]
        for _ in range(300):
            row = client.request("GET", f"/classes/_JobStatus/{status_id}", master=True).json()
            if row.get("status") == "succeeded" and "finishedAt" in row:
                break
            client.loop.run_until_complete(asyncio.sleep(0.01))
        client.loop.run_until_complete(asyncio.sleep(0.05))  # a late message write would land by now
        row = client.request("GET", f"/classes/_JobStatus/{status_id}", master=True).json()
        assert (row["status"], row["message"]) == ("succeeded", final)
