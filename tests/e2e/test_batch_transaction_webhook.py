"""A Cloud Code webhook that queries the server while a transactional batch is open (``parsectl serve`` on
SQLite): the webhook's request is answered with what is committed, so the batch goes through at once."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.server.test_hooks import Target
from tests.support.parsectl_proc import parsectl_server


def test_a_webhook_querying_the_server_during_a_transactional_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSE_SERVER_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("PARSE_SERVER_WEBHOOK_TIMEOUT", "5")
    target = Target()
    try:
        with parsectl_server() as server, httpx.Client(base_url=server.server_url, timeout=30,
                                                       headers=server.headers(master=True)) as client:

            def price_lookup(body: dict[str, Any]) -> dict[str, Any]:
                """beforeSave of Order: the order's product looked up on the server, over HTTP (what a shop's
                webhook does), for its price."""
                order = dict(body["object"])
                found = client.get("/classes/Product",
                                   params={"where": json.dumps({"sku": order["sku"]})}).json()["results"]
                return {"success": {**order, "price": found[0]["price"]}} if found else {"error": "no product"}

            target.answers = {"/price": price_lookup}
            for sku, price in (("tea", 4), ("cake", 7)):
                assert client.post("/classes/Product", json={"sku": sku, "price": price}).status_code == 201
            assert client.post("/hooks/triggers", json={"className": "Order", "triggerName": "beforeSave",
                                                        "url": target.url("/price")}).status_code == 200
            started = time.monotonic()
            r = client.post("/batch", json={"transaction": True, "requests": [
                {"method": "POST", "path": "/parse/classes/Order", "body": {"sku": sku}} for sku in ("tea", "cake")]})
            took = time.monotonic() - started
            assert r.status_code == 200, r.text
            assert all("success" in item for item in r.json())
            assert took < 5  # not the webhook timeout
            orders = client.get("/classes/Order", params={"order": "price"}).json()["results"]
            assert [(o["sku"], o["price"]) for o in orders] == [("tea", 4), ("cake", 7)]
    finally:
        target.close()
