"""Literals parsectl hands PostgreSQL as text must read back as the values they stand for."""

from __future__ import annotations

import psycopg
import pytest

from parsectl.model import codec
from parsectl.storage import pg_types
from parsectl.storage.postgres_query import text_array

pytestmark = pytest.mark.slow


def test_text_array_literals_round_trip(pg_uri: str) -> None:
    awkward = ["*", "role:Admin", 'a"b', "back\\slash", "with space", "comma,inside", "{braces}", "NULL", ""]
    with psycopg.connect(pg_uri) as conn:
        for values in ([], ["*"], awkward):
            got = conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone()[0]
            assert got == values


def test_timestamps_load_as_javascript_iso_strings(pg_uri: str) -> None:
    """The loader's fast path must give what formatting psycopg's datetime gives, for every text form."""
    iso = "2026-11-28T07:01:02.123Z"
    assert codec.is_canonical_iso(iso) and not codec.is_canonical_iso("2026-02-30T00:00:00.000Z")
    values = ["2026-11-28T07:01:02.123Z", "2026-11-28 07:01:02+00", "2026-11-28 07:01:02.9+00",
              "2026-11-28 07:01:02.999999+00", "2026-11-28 07:01:02.000001+00", "0099-01-01 00:00:00.5+00",
              "2026-06-30 23:59:59.25-07"]
    with psycopg.connect(pg_uri, options="-c TimeZone=UTC -c DateStyle=ISO,MDY") as plain:
        expected = [codec.format_iso(plain.execute("SELECT %s::timestamptz", (v,)).fetchone()[0]) for v in values]
    with psycopg.connect(pg_uri, options=pg_types.SESSION_OPTIONS) as conn:
        conn.adapters.register_loader("timestamptz", pg_types.IsoTimestampLoader)
        got = [conn.execute("SELECT %s::timestamptz", (v,)).fetchone()[0] for v in values]
    assert got == expected
    assert got[0] == iso and got[1] == "2026-11-28T07:01:02.000Z" and got[3] == "2026-11-28T07:01:02.999Z"
    with psycopg.connect(pg_uri, options=pg_types.SESSION_OPTIONS) as conn:  # datetime stops at 9999
        conn.adapters.register_loader("timestamptz", pg_types.IsoTimestampLoader)
        big = conn.execute("SELECT '12026-01-01 00:00:00.5+00'::timestamptz").fetchone()[0]
    assert big == "+012026-01-01T00:00:00.500Z"  # as JavaScript's Date.toJSON writes it
