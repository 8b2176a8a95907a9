"""Human-friendly resource quantities: memory sizes and walltimes.

Users write ``memory="1 GiB"`` and ``walltime="10m"``; the wire carries integers (bytes and
seconds). Both the client and the gateway parse with these functions, so a string that one
side accepts the other accepts too.

>>> parse_memory("1 GiB")
1073741824
>>> parse_memory("512MB")
512000000
>>> parse_walltime("1h30m")
5400
>>> parse_walltime("1 hour 30 minutes")
5400
>>> parse_walltime("01:00:00")
3600
>>> format_memory(3 * 1024**3)
'3 GiB'
"""

from __future__ import annotations

import re

_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
}
# a number and a unit, the longest spelling first; "1 hour, 30 minutes" and "1h and 30m" too
_DURATION_RE = re.compile(
    r"(\d+(?:\.\d+)?)\s*("
    + "|".join(sorted(_DURATION_UNITS, key=len, reverse=True))
    + r")(?![a-z])"
)
_DURATION_GLUE = re.compile(r"[\s,]+|\band\b")
_CLOCK_RE = re.compile(r"^\s*(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)\s*$")


def parse_memory(value: int | float | str) -> int:
    """Return a memory size in bytes.

    Accepts an integer number of bytes or a string such as ``"2 GiB"``, ``"512MB"``,
    ``"1.5G"``. Decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB) units are both
    understood, as in Dask and Kubernetes: ``"2G"`` and ``"2GB"`` are 2,000,000,000 bytes,
    ``"2Gi"`` and ``"2GiB"`` are 2,147,483,648. A bare number is bytes.
    """
    if type(value) is int and value >= 0:  # the wire's own form: the hot path
        return value
    if isinstance(value, bool):
        raise ValueError(f"memory must be a size such as '2 GiB', not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"memory must not be negative, got {value}")
        return int(value)
    match = _MEMORY_RE.match(value)
    if not match:
        raise ValueError(f"cannot parse memory {value!r}: write a size such as '2 GiB' or '512MB'")
    number, unit = match.groups()
    factor = _MEMORY_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(
            f"cannot parse memory {value!r}: unknown unit {unit!r} (use B, kB, MB, GB, TB, "
            "KiB, MiB, GiB or TiB)"
        )
    return int(float(number) * factor)


def parse_walltime(value: int | float | str) -> int:
    """Return a duration in whole seconds.

    Accepts seconds as a number, unit strings such as ``"90s"``, ``"10m"``, ``"1h30m"``,
    ``"2d"``, words such as ``"10 minutes"``, ``"1 hour 30 min"`` or ``"2 days"``, or
    batch-system clock notation ``"HH:MM:SS"`` / ``"D-HH:MM:SS"``.
    """
    if type(value) is int and value >= 0:  # the wire's own form: the hot path
        return value
    if isinstance(value, bool):
        raise ValueError(f"walltime must be a duration such as '10m', not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"walltime must not be negative, got {value}")
        return int(value)
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    clock = _CLOCK_RE.match(text)
    if clock:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in clock.groups())
        return days * 86400 + hours * 3600 + minutes * 60 + seconds
    pieces = _DURATION_RE.findall(text)
    if not pieces or _DURATION_GLUE.sub("", _DURATION_RE.sub("", text)):
        raise ValueError(
            f"cannot parse walltime {value!r}: write a duration such as '90s', '10m', "
            "'1h30m', '10 minutes' or 'HH:MM:SS'"
        )
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in pieces))


def format_memory(nbytes: int) -> str:
    """Format bytes with the largest binary unit that keeps the number readable."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= factor:
            amount = nbytes / factor
            return f"{amount:.0f} {unit}" if amount == int(amount) else f"{amount:.1f} {unit}"
    return f"{nbytes} B"


def format_walltime(seconds: float) -> str:
    """Format seconds as ``H:MM:SS``."""
    total = int(seconds)
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"
