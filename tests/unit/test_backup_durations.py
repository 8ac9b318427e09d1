"""Human durations -> what strata's `delete --age` (Go time.ParseDuration: no days) accepts."""

from __future__ import annotations

import pytest

from parsectl.backup.durations import DurationError, humanize, parse_go_duration, parse_human, to_go_duration
from tests.support.fake_strata import parse_go_duration as go_parse


@pytest.mark.parametrize(("human", "go"), [
    ("30d", "720h"), ("12h", "12h"), ("1w", "168h"), ("2d12h", "60h"), ("90m", "1h30m"), ("45s", "45s"),
    ("720h", "720h"), ("1d 6h", "30h"), ("1.5d", "36h"), ("36h30m15s", "36h30m15s"), ("2 days", "48h"),
])
def test_human_to_go(human: str, go: str) -> None:
    assert to_go_duration(human) == go
    assert "d" not in go and "w" not in go
    # what Go's ParseDuration (as the stand-in implements it) reads back is the same span
    assert go_parse(go) == parse_human(human)


@pytest.mark.parametrize("bad", ["", "30", "d", "30x", "-5d", "0h", "5d-", "1y"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(DurationError):
        parse_human(bad)


def test_go_parse_duration_refuses_days() -> None:
    with pytest.raises(ValueError, match='unknown unit "d"'):
        go_parse("30d")


@pytest.mark.parametrize(("text", "seconds"), [
    ("187.929573ms", 0.187929573), ("1h2m3.4s", 3723.4), ("0s", 0.0), ("640.392µs", 0.000640392),
    ("2.032756ms", 0.002032756), ("15m0s", 900.0), ("812ns", 812e-9),
])
def test_parse_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_humanize() -> None:
    assert humanize(93784) == "1d2h"
    assert humanize(3900) == "1h5m"
    assert humanize(42) == "42s"
