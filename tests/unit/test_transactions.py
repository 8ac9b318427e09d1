"""parsectl.storage.transactions: a MongoDB deployment without transactions is refused clearly."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from parsectl.model.errors import ParseError
from parsectl.storage.transactions import mongo_transaction


class _Admin:
    def __init__(self, hello: dict[str, Any]) -> None:
        self.hello = hello

    async def command(self, name: str) -> dict[str, Any]:
        assert name == "hello"
        return self.hello


def test_standalone_mongodb_cannot_run_a_transaction() -> None:
    adapter = SimpleNamespace(client=SimpleNamespace(admin=_Admin({"isWritablePrimary": True, "ok": 1.0})))

    async def enter() -> None:
        async with mongo_transaction(adapter):
            raise AssertionError("the transaction must not start")

    with pytest.raises(ParseError) as caught:
        asyncio.run(enter())
    assert caught.value.code == 1
    assert "needs a replica set or a sharded cluster" in caught.value.message
