"""A Cloud Code webhook that queries the server while a transactional batch is open (``parsectl serve`` on
SQLite): the webhook's request is answered with what is committed, so the batch goes through at once."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.support.parsectl_proc import parsectl_server


class _PriceLookup(http.server.BaseHTTPRequestHandler):
    """A beforeSave webhook for Order: looks the order's product up on the server, over HTTP, and sets its
    price (what a shop's webhook does)."""

    server_url = ""
    headers_out: dict[str, str] = {}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        order = dict(body["object"])
        found = httpx.get(f"{self.server_url}/classes/Product", headers=self.headers_out, timeout=10,
                          params={"where": json.dumps({"sku": order["sku"]})}).json()["results"]
        answer = {"success": {**order, "price": found[0]["price"]}} if found else {"error": "unknown product"}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_webhook_querying_the_server_during_a_transactional_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARSE_SERVER_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("PARSE_SERVER_WEBHOOK_TIMEOUT", "5")
    with parsectl_server() as server:
        headers = server.headers(master=True)
        _PriceLookup.server_url, _PriceLookup.headers_out = server.server_url, headers
        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PriceLookup)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        try:
            with httpx.Client(base_url=server.server_url, headers=headers, timeout=30) as client:
                for sku, price in (("tea", 4), ("cake", 7)):
                    assert client.post("/classes/Product", json={"sku": sku, "price": price}).status_code == 201
                assert client.post("/hooks/triggers", json={
                    "className": "Order", "triggerName": "beforeSave",
                    "url": f"http://127.0.0.1:{hook.server_port}/price"}).status_code == 200
                started = time.monotonic()
                r = client.post("/batch", json={"transaction": True, "requests": [
                    {"method": "POST", "path": "/parse/classes/Order", "body": {"sku": sku}}
                    for sku in ("tea", "cake")]})
                took = time.monotonic() - started
                assert r.status_code == 200, r.text
                assert all("success" in item for item in r.json())
                assert took < 5  # not the webhook timeout
                orders = client.get("/classes/Order", params={"order": "price"}).json()["results"]
                assert [(o["sku"], o["price"]) for o in orders] == [("tea", 4), ("cake", 7)]
        finally:
            hook.shutdown()
            hook.server_close()
