"""The server's query-string splitter must read every query string as urllib's parse_qsl does."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

import pytest

from parsectl.server.app import _split_query

CASES = ["where=%7B%22score%22%3A%7B%22%24gt%22%3A5%7D%7D&limit=20&order=-score", "a=1&&b=&c",
         "x=a+b%20c&y=%E2%82%AC", "=v&k=", "", "a=1=2&b", "%zz=1&q=%", "k=caf\xe9", "&&&", "a+b=c+d"]


@pytest.mark.parametrize("text", CASES)
def test_known_cases(text: str) -> None:
    assert _split_query(text) == parse_qsl(text, keep_blank_values=True)


def test_random_strings() -> None:
    rng = random.Random(7)
    alphabet = "ab=&%+2F0E9x\xe9 ;"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert _split_query(text) == parse_qsl(text, keep_blank_values=True), text
