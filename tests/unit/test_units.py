from __future__ import annotations

import pytest

from farside_protocol import format_memory, parse_memory, parse_walltime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 GiB", 1024**3),
        ("512MB", 512 * 1000**2),
        ("1.5G", 1_500_000_000),
        ("2 gib", 2 * 1024**3),
        (4096, 4096),
        ("100", 100),
        ("3TiB", 3 * 1024**4),
    ],
)
def test_parse_memory(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("01:00:00", 3600),
        ("1-00:00:00", 86400),
        ("05:30", 330),
        (42, 42),
        ("120", 120),
        ("1.5h", 5400),
        ("10 minutes", 600),
        ("1 hour", 3600),
        ("2 hours 30 minutes", 9000),
        ("1 hour, 30 min", 5400),
        ("1h and 30m", 5400),
        ("3 days", 259200),
        ("1 week", 604800),
        ("45 sec", 45),
        ("1.5 Hours", 5400),
    ],
)
def test_parse_walltime(text: str | int, expected: int) -> None:
    assert parse_walltime(text) == expected


@pytest.mark.parametrize("bad", ["lots", "1 PiB", "GiB", "-5 MB", "", True])
def test_parse_memory_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", ["soon", "ten minutes", "10 mo", "5 hoursx", "1h 2x", "and", "", -1, True]
)
def test_parse_walltime_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="walltime"):
        parse_walltime(bad)  # type: ignore[arg-type]


def test_memory_units_are_decimal_unless_binary() -> None:
    # as in Dask and Kubernetes: a G is 10**9, a Gi 2**30
    assert parse_memory("2G") == parse_memory("2GB") == 2_000_000_000
    assert parse_memory("2Gi") == parse_memory("2 GiB") == 2 * 1024**3


def test_format_memory_round_trips() -> None:
    for size in (1024, 3 * 1024**3, 1536 * 1024**2):
        assert parse_memory(format_memory(size)) == size
