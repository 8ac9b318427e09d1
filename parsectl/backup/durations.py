"""Human durations (``30d``, ``12h``, ``1w2d``, ``90m``) and Go durations (``720h``, ``187.929573ms``).

strata hands ``delete --age`` to Go's ``time.ParseDuration``, which knows ns, us/µs, ms, s, m and h but
not days or weeks; :func:`to_go_duration` writes any human duration in those units (days become hours).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_HUMAN_UNITS = {
    "w": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400,
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}
_GO_UNITS = {"ns": Decimal("1e-9"), "us": Decimal("1e-6"), "µs": Decimal("1e-6"), "μs": Decimal("1e-6"),
             "ms": Decimal("1e-3"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zµμ]+)")


class DurationError(ValueError):
    """A duration that cannot be read; the message gives an example of what works."""


def parse_human(text: str) -> int:
    """Seconds in ``30d``, ``12h``, ``1w``, ``2d12h``, ``90m``, ``45s`` (also Go forms such as ``720h``).

    A bare number is refused: say the unit."""
    raw = (text or "").strip().lower().replace(" ", "")
    if not raw:
        raise DurationError("empty duration: give e.g. 30d, 12h or 90m")
    pos, total = 0, Decimal(0)
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        number, unit = match.groups()
        if unit not in _HUMAN_UNITS:
            raise DurationError(f"unknown unit {unit!r} in duration {text!r}: use w, d, h, m or s (e.g. 30d, 12h)")
        total += Decimal(number) * _HUMAN_UNITS[unit]
        pos = match.end()
    if pos != len(raw):
        raise DurationError(f"cannot read duration {text!r}: give e.g. 30d, 12h, 1d12h or 90m")
    seconds = int(total)
    if seconds <= 0:
        raise DurationError(f"duration {text!r} must be longer than zero")
    return seconds


def to_go_duration(text_or_seconds: str | int) -> str:
    """The Go ``time.ParseDuration`` form strata accepts: ``30d`` -> ``720h``, ``90m`` -> ``1h30m``,
    ``36h30m15s`` stays; always whole hours/minutes/seconds, never ``d``."""
    seconds = parse_human(text_or_seconds) if isinstance(text_or_seconds, str) else int(text_or_seconds)
    if seconds <= 0:
        raise DurationError("duration must be longer than zero")
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if secs:
        out += f"{secs}s"
    return out


def parse_go_duration(text: str) -> float:
    """Seconds in a Go Duration string as ``time.Duration.String()`` prints it (``1h2m3.4s``,
    ``187.929573ms``, ``0s``)."""
    raw = (text or "").strip()
    if raw in ("0", "0s"):
        return 0.0
    sign = -1 if raw.startswith("-") else 1
    raw = raw.lstrip("+-")
    pos, total = 0, Decimal(0)
    for match in re.finditer(r"(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s|m|h)", raw):
        if match.start() != pos:
            break
        try:
            total += Decimal(match.group(1)) * _GO_UNITS[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
            raise DurationError(f"bad Go duration {text!r}") from exc
        pos = match.end()
    if not raw or pos != len(raw):
        raise DurationError(f"not a Go duration: {text!r}")
    return sign * float(total)


def humanize(seconds: float) -> str:
    """``93784`` -> ``1d2h3m``; for ages and messages."""
    seconds = int(round(seconds))
    if seconds < 0:
        return "-" + humanize(-seconds)
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, _ = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes and not days else ""]
    return "".join(parts) or "0m"
