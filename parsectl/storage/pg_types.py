"""psycopg loaders for the server's PostgreSQL connections.

Every timestamp the server reads goes to clients as JavaScript's ``Date.toJSON`` string (UTC, milliseconds,
``Z``). Loading a ``timestamptz`` straight into that string, from the text PostgreSQL sends anyway
(``2026-11-28 07:04:33.398+00`` with ``TimeZone=UTC`` and ``DateStyle=ISO``), skips building a datetime per
value only to format it again; and unlike formatting in SQL (``to_char``), it costs nothing for rows a
``WHERE`` or ``ORDER BY … LIMIT`` throws away, since PostgreSQL evaluates the select list before sorting.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.types.datetime import TimestamptzLoader

from parsectl.model import codec

_LONG_YEAR = re.compile(r"^(\d{5,})(-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$")

# What the connections must be set to for the text form above.
SESSION_OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO,MDY"


class IsoTimestampLoader(Loader):
    """``timestamptz`` → ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (milliseconds truncated, as ``Date.toJSON`` of a
    millisecond value and as parse-server stores them)."""

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        self._fallback = TimestamptzLoader(oid, context)

    def load(self, data: Any) -> str:
        text = str(data, "ascii")
        if len(text) == 26 and text[23:] == "+00" and text[4] == "-":  # milliseconds: what the server writes
            return f"{text[:10]}T{text[11:23]}Z"
        # 'YYYY-MM-DD HH:MM:SS+00' or with a fraction of 1 to 6 digits: '...:SS.123456+00'
        if len(text) >= 22 and text[4] == "-" and text[10] == " " and text.endswith("+00"):
            if len(text) == 22:
                return f"{text[:10]}T{text[11:19]}.000Z"
            if text[19] == ".":
                return f"{text[:10]}T{text[11:19]}.{(text[20:-3] + '00')[:3]}Z"
        match = _LONG_YEAR.match(text)
        if match:  # past year 9999, which datetime cannot hold: JavaScript's extended form, +YYYYYY
            year, day, clock, fraction = match.groups()
            return f"+{int(year):06d}{day}T{clock}.{((fraction or '') + '000')[:3]}Z"
        # anything else (an offset other than UTC): the general path
        return codec.format_iso(self._fallback.load(data))


def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("timestamptz", IsoTimestampLoader)
