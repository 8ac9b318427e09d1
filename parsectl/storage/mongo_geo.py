"""The MongoDB indexes geo and text queries need, created on first use as parse-server creates them.

parse-server adds a ``2d`` index on a GeoPoint field when MongoDB refuses a ``$nearSphere`` for lack
of one (MongoCollection.find), and a ``<field>_text`` text index before the first ``$text`` query on
a field no index covers yet (createTextIndexesIfNeeded). Here both are created before the query runs;
the adapter remembers which it has made, so later queries cost no extra round trip.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.errors import OperationFailure

from parsectl.model import errors
from parsectl.model.errors import ParseError
from parsectl.storage.mongo_query import SCORE_FIELD, MongoCompiler

log = logging.getLogger(__name__)


async def ensure_query_indexes(coll: Any, compiler: MongoCompiler, made: set[tuple[str, str, str]],
                               schemas: Any = None) -> None:
    """Create the indexes ``compiler``'s last query needs; a new text index is also written into the
    class's ``_SCHEMA._metadata.indexes`` (``schemas``: the _SCHEMA collection), as parse-server does."""
    wanted = [(key, "2d") for key in compiler.near_keys] + [(key, "text") for key in compiler.text_keys]
    for key, kind in wanted:
        marker = (coll.name, key, kind)
        if marker in made:
            continue
        if kind == "text" and await _has_text_index(coll):
            made.add(marker)
            continue
        try:
            await coll.create_index([(key, kind)], name=f"{key}_{kind}")
        except OperationFailure as exc:  # another text index exists, or the server has no such index
            log.info("cannot create the %s index on %s.%s: %s", kind, coll.name, key, exc)
            continue
        made.add(marker)
        if kind == "text" and schemas is not None:
            await schemas.update_one({"_id": compiler.schema.class_name},
                                     {"$set": {f"_metadata.indexes.{key}_text": {key: "text"}}})


async def _has_text_index(coll: Any) -> bool:
    try:
        indexes = await coll.index_information()
    except OperationFailure:
        return False
    return any(direction == "text" for info in indexes.values() for _, direction in info.get("key", []))


def score_projection(compiler: MongoCompiler) -> dict[str, Any] | None:
    """The projection that adds a ``$text`` query's score to each document (None without ``$text``)."""
    return {SCORE_FIELD: {"$meta": "textScore"}} if compiler.text_keys else None


def query_error(exc: OperationFailure, compiler: MongoCompiler) -> ParseError | None:
    """A 102 for a geo/text query the MongoDB server refuses (e.g. no text index support), else None."""
    if not compiler.geo_text:
        return None
    message = (exc.details or {}).get("errmsg") or str(exc)
    return ParseError(errors.INVALID_QUERY, f"The database refused this query: {message}")
