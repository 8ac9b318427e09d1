"""Literals parsectl hands PostgreSQL as text must read back as the values they stand for."""

from __future__ import annotations

import psycopg
import pytest

from parsectl.model import codec
from parsectl.storage.postgres_query import text_array

pytestmark = pytest.mark.slow


def test_text_array_literals_round_trip(pg_uri: str) -> None:
    awkward = ["*", "role:Admin", 'a"b', "back\\slash", "with space", "comma,inside", "{braces}", "NULL", ""]
    with psycopg.connect(pg_uri) as conn:
        for values in ([], ["*"], awkward):
            got = conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone()[0]
            assert got == values


def test_server_timestamps_read_back_to_the_millisecond(pg_uri: str) -> None:
    iso = "2026-11-28T07:01:02.123Z"
    assert codec.is_canonical_iso(iso) and not codec.is_canonical_iso("2026-02-30T00:00:00.000Z")
    with psycopg.connect(pg_uri, options="-c TimeZone=America/New_York") as conn:
        got = conn.execute("SELECT to_char(%s::timestamptz AT TIME ZONE 'UTC', "
                           "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')", (iso,)).fetchone()[0]
    assert got == iso
