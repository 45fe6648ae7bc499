"""Prometheus-style durations (`30s`, `5m`, `1h30m`, `14d`) parsed to seconds and back."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as `5m` or `1h30m`; a bare number is seconds.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration(90)
    90.0
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return float(text)
    s = str(text).strip()
    pos, total, last_rank = 0, 0.0, -1
    for match in _PART.finditer(s):
        rank = _ORDER.index(match.group(2))
        if match.start() != pos or rank <= last_rank:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos, last_rank = match.end(), rank
    if not s or pos != len(s):
        raise ValueError(f'invalid duration "{s}" (use e.g. 30s, 5m, 1h30m, 14d)')
    return float(total)


def whole_minutes(seconds: float) -> int:
    """`seconds` rounded up to a whole minute, as a rule's window is written.

    >>> whole_minutes(1801), whole_minutes(3600)
    (1860, 3600)
    """
    return 60 * math.ceil(seconds / 60)


def format_duration(seconds: float) -> str:
    """The shortest Prometheus-style spelling of a duration in seconds.

    >>> format_duration(5400)
    '1h30m'
    >>> format_duration(0)
    '0s'
    """
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit in _ORDER[2:]:  # days, not weeks or years: `14d` reads better than `2w`
        size = round(_UNITS[unit] * 1000)
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
