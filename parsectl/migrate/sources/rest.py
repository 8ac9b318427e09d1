"""A live Parse Server as a migration source, read over its REST API with the master key.

Classes and schemas come from ``GET /schemas``; objects are paged by objectId
(``where={"objectId":{"$gt":last}}``, ``order=objectId``), so there is no ``skip`` and no skip limit;
relations are read with ``$relatedTo`` once per owning object. parse-server never returns password hashes
(or any other ``_``-prefixed internal field) over REST, so ``has_password_hashes`` is False.

Requests are retried on connection errors, timeouts, 429 and 5xx answers (a bounded number of times,
with exponential backoff); a 401/403 is reported at once as bad keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from parsectl.migrate.source import Batch, SourceSchema
from parsectl.model.errors import ParseError
from parsectl.model.objects import rest_to_storage
from parsectl.model.schema import VOLATILE_CLASSES, ClassSchema, default_clp
from parsectl.storage.base import StoredObject

PAGE_LIMIT = 1000  # hosted Parse and many deployments cap `limit` at 1000
RELATION_CONCURRENCY = 8  # owning objects whose relations are read at the same time


class RestSourceError(RuntimeError):
    """The server refused or failed a request (after retries), with what to do about it."""


class RestSource:
    """``Source`` over a Parse Server's REST API (``server_url`` like ``https://host/parse``)."""

    has_password_hashes = False

    def __init__(self, server_url: str, app_id: str, master_key: str, *, client: httpx.AsyncClient | None = None,
                 include_sessions: bool = False, include_volatile: bool = False, retries: int = 5,
                 backoff: float = 0.25, timeout: float = 60.0) -> None:
        self.server_url = server_url.rstrip("/")
        self.app_id = app_id
        self.master_key = master_key
        self.include_sessions = include_sessions
        self.include_volatile = include_volatile
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.description = f"Parse Server at {self.server_url} (REST, master key)"
        self._client = client
        self._own_client = client is None
        self._schemas: dict[str, ClassSchema] | None = None

    # --- lifecycle ------------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
            self._own_client = True
        await self._load_schemas()  # checks the URL and the keys before anything else

    async def close(self) -> None:
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("RestSource is not open")
        return self._client

    def _headers(self) -> dict[str, str]:
        return {"X-Parse-Application-Id": self.app_id, "X-Parse-Master-Key": self.master_key}

    # --- HTTP with retries ------------------------------------------------------------------------------
    async def _send(self, method: str, url: str, *, params: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        """The response, after retrying transient failures; raises RestSourceError when they persist."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(min(self.backoff * 2 ** (attempt - 1), 8.0))
            try:
                response = await self.client.request(method, url, params=params, headers=headers)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts, protocol errors
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code == 429 or response.status_code >= 500:
                last = f"HTTP {response.status_code} {response.text[:200]}"
                continue
            return response
        raise RestSourceError(f"{method} {url} failed after {self.retries + 1} attempts: {last}")

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        url = self.server_url + path
        response = await self._send("GET", url, params=params, headers=self._headers())
        if response.status_code in (401, 403):
            raise RestSourceError(
                f"{self.server_url} refused the application id or master key (HTTP {response.status_code}: "
                f"{_error_text(response)}); check --app-id and --master-key")
        if response.status_code != 200:
            raise RestSourceError(f"GET {url} answered HTTP {response.status_code}: {_error_text(response)}")
        try:
            return response.json()
        except ValueError:
            raise RestSourceError(f"GET {url} did not answer JSON (is {self.server_url} a Parse Server mount "
                                  "such as https://host/parse?)") from None

    async def _find(self, class_name: str, where: dict[str, Any], *, limit: int, keys: str | None = None,
                    count: bool = False) -> dict[str, Any]:
        params: dict[str, Any] = {"where": json.dumps(where, separators=(",", ":")), "limit": str(limit)}
        if limit:
            params["order"] = "objectId"
        if keys:
            params["keys"] = keys
        if count:
            params["count"] = "1"
        body = await self._get(f"/classes/{class_name}", params)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise RestSourceError(f"GET /classes/{class_name} answered without a results list: {str(body)[:200]}")
        return body

    # --- schema ----------------------------------------------------------------------------------------
    async def _load_schemas(self) -> dict[str, ClassSchema]:
        if self._schemas is None:
            body = await self._get("/schemas")
            results = body.get("results") if isinstance(body, dict) else None
            if not isinstance(results, list):
                raise RestSourceError(f"GET {self.server_url}/schemas answered without a results list")
            schemas: dict[str, ClassSchema] = {}
            for doc in results:
                schema = schema_from_json(doc)
                if self._wanted(schema.class_name):
                    schemas[schema.class_name] = schema
            self._schemas = schemas
        return self._schemas

    def _wanted(self, class_name: str) -> bool:
        if class_name == "_Session":
            return self.include_sessions
        if class_name in VOLATILE_CLASSES:
            return self.include_volatile
        return not class_name.startswith("_Join:")

    async def schema(self) -> SourceSchema:
        schemas = await self._load_schemas()
        sem = asyncio.Semaphore(RELATION_CONCURRENCY)

        async def count(name: str) -> int | None:
            async with sem:
                try:
                    return await self.count(name)
                except RestSourceError:
                    return None

        names = sorted(schemas)
        counts = dict(zip(names, await asyncio.gather(*(count(n) for n in names)), strict=True))
        notes = {name: {field: "stated by GET /schemas" for field in s.fields} for name, s in schemas.items()}
        return SourceSchema(classes=dict(schemas), counts=counts, notes=notes)

    async def count(self, class_name: str) -> int:
        """The exact number of objects (an always-true constraint stops parse-server on PostgreSQL from
        answering an unfiltered count with the table statistics' estimate)."""
        body = await self._find(class_name, {"objectId": {"$exists": True}}, limit=0, count=True)
        return int(body.get("count", 0))

    # --- objects ---------------------------------------------------------------------------------------
    async def objects(self, class_name: str, *, after: str | None = None, batch_size: int = PAGE_LIMIT
                      ) -> AsyncIterator[Batch]:
        limit = max(1, min(batch_size, PAGE_LIMIT))
        while True:
            where = {"objectId": {"$gt": after}} if after is not None else {}
            results = (await self._find(class_name, where, limit=limit))["results"]
            if not results:
                return
            objects = []
            for item in results:
                try:
                    objects.append(rest_to_storage(class_name, item))
                except ParseError as exc:
                    raise ParseError(exc.code, f"{class_name} {item.get('objectId')!r}: {exc.message}") from None
            after = objects[-1]["objectId"]
            yield Batch(objects=objects, checkpoint=after)
            # a server whose maxLimit is below `limit` answers short pages, so only an empty page ends it

    async def _ids(self, class_name: str, where: dict[str, Any]) -> AsyncIterator[list[str]]:
        """Pages of objectIds matching ``where``, in objectId order."""
        after: str | None = None
        while True:
            page_where = dict(where)
            if after is not None:
                page_where["objectId"] = {"$gt": after}
            results = (await self._find(class_name, page_where, limit=PAGE_LIMIT, keys="objectId"))["results"]
            ids = [r["objectId"] for r in results if isinstance(r, dict) and isinstance(r.get("objectId"), str)]
            if not ids:
                return
            yield ids
            after = ids[-1]

    async def _related(self, class_name: str, field_name: str, target: str, owner: str) -> list[str]:
        related: list[str] = []
        where = {"$relatedTo": {"object": {"__type": "Pointer", "className": class_name, "objectId": owner},
                                "key": field_name}}
        async for ids in self._ids(target, where):
            related.extend(ids)
        return related

    async def relations(self, class_name: str, field_name: str, *, batch_size: int = 5000
                        ) -> AsyncIterator[list[tuple[str, str]]]:
        schemas = await self._load_schemas()
        schema = schemas.get(class_name)
        ftype = schema.fields.get(field_name) if schema else None
        if not ftype or ftype.get("type") != "Relation" or not ftype.get("targetClass"):
            raise RestSourceError(f"{class_name}.{field_name} is not a relation in {self.server_url}/schemas")
        target = ftype["targetClass"]
        if await self.count(target) == 0:  # nothing can be related: spare one query per owning object
            return
        rows: list[tuple[str, str]] = []
        async for owners in self._ids(class_name, {}):
            for start in range(0, len(owners), RELATION_CONCURRENCY):
                chunk = owners[start:start + RELATION_CONCURRENCY]
                found = await asyncio.gather(*(self._related(class_name, field_name, target, o) for o in chunk))
                for owner, related in zip(chunk, found, strict=True):
                    rows.extend((owner, r) for r in related)
                while len(rows) >= batch_size:
                    yield rows[:batch_size]
                    rows = rows[batch_size:]
        if rows:
            yield rows

    # --- following a live server (``migrate --follow``) ----------------------------------------------------
    async def live_schemas(self) -> dict[str, ClassSchema]:
        """The schemas as they are now (classes and fields added since the copy began included)."""
        self._schemas = None
        return await self._load_schemas()

    async def changed(self, class_name: str, since: str, *, batch_size: int = PAGE_LIMIT
                      ) -> AsyncIterator[list[StoredObject]]:
        """Objects updated at or after ``since`` (an ISO date), in objectId order."""
        after: str | None = None
        limit = max(1, min(batch_size, PAGE_LIMIT))
        while True:
            where: dict[str, Any] = {"updatedAt": {"$gte": {"__type": "Date", "iso": since}}}
            if after is not None:
                where["objectId"] = {"$gt": after}
            results = (await self._find(class_name, where, limit=limit))["results"]
            if not results:
                return
            objects = [rest_to_storage(class_name, item) for item in results]
            yield objects
            after = objects[-1]["objectId"]

    async def related_ids(self, class_name: str, field_name: str, owner_id: str) -> list[str]:
        schema = (await self._load_schemas()).get(class_name)
        target = schema.fields[field_name]["targetClass"] if schema else None
        return await self._related(class_name, field_name, target, owner_id) if target else []

    # --- files -----------------------------------------------------------------------------------------
    async def file_bytes(self, name: str, url: str | None) -> bytes | None:
        """The file's bytes from its URL (else the server's ``/files/<appId>/<name>``); None if unavailable."""
        if not url:
            url = f"{self.server_url}/files/{quote(self.app_id, safe='')}/{quote(name, safe='')}"
        headers = {"X-Parse-Application-Id": self.app_id} if url.startswith(self.server_url + "/") else None
        try:
            response = await self._send("GET", url, headers=headers)
        except RestSourceError:
            return None
        return response.content if response.status_code == 200 else None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return f"{body.get('error')}" + (f" (code {body['code']})" if "code" in body else "")
    return str(body)[:200]


def schema_from_json(doc: Any) -> ClassSchema:
    """A ``/schemas`` entry (``className``, ``fields``, ``classLevelPermissions``, ``indexes``) as a ClassSchema."""
    if not isinstance(doc, dict) or not isinstance(doc.get("className"), str):
        raise RestSourceError(f"GET /schemas returned an entry without a className: {str(doc)[:200]}")
    fields = {name: dict(t) for name, t in (doc.get("fields") or {}).items() if isinstance(t, dict) and "type" in t}
    schema = ClassSchema.new(doc["className"], fields)
    clp = doc.get("classLevelPermissions")
    schema.clp = dict(clp) if isinstance(clp, dict) else default_clp()
    indexes = doc.get("indexes")
    schema.indexes = dict(indexes) if isinstance(indexes, dict) else {}
    return schema
