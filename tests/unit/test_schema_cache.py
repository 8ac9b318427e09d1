"""The schema controller's cache never loses a field to two requests adding fields at once."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from parsectl.model.codec import FieldType
from parsectl.model.schema import ClassSchema
from parsectl.server.schemas import SchemaController


class SlowFirstStore:
    """add_fields like a locking store: each call sees the earlier ones, but the first caller resumes last."""

    def __init__(self) -> None:
        self.schema = ClassSchema.new("Job")
        self.calls = 0

    async def schema_version(self) -> None:
        return None

    async def load_schemas(self) -> dict[str, ClassSchema]:
        return {"Job": copy.deepcopy(self.schema)}

    async def add_fields(self, class_name: str, fields: dict[str, FieldType]) -> ClassSchema:
        self.calls += 1
        self.schema.fields.update(fields)
        answer = copy.deepcopy(self.schema)
        await asyncio.sleep(0.05 if self.calls == 1 else 0)
        return answer


def test_a_late_answer_does_not_drop_a_field_from_the_cache() -> None:
    async def go() -> Any:
        store = SlowFirstStore()
        controller = SchemaController(store)  # type: ignore[arg-type]
        await controller.load()
        schema = await controller.get("Job")
        assert schema is not None
        await asyncio.gather(controller.ensure_fields(schema, {"message": {"type": "String"}}),
                             controller.ensure_fields(schema, {"finishedAt": {"type": "Date"}}))
        return controller.cached("Job")

    cached = asyncio.run(go())
    assert cached is not None
    assert {"message", "finishedAt"} <= set(cached.fields)
