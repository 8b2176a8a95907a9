"""How the ``farside`` command prints: aligned tables (cells whole when piped), JSON, times."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from farside_protocol import format_memory

__all__ = ["cell_width", "gpu_use", "listing", "print_json", "table", "when"]


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def gpu_use(memory: int | None, utilization: float | None) -> str | None:
    """An attempt's GPU use as nvidia-smi saw it: peak memory and mean utilisation.

    >>> gpu_use(3 * 1024**3, 87.25), gpu_use(None, None)
    ('3 GiB, 87%', None)
    """
    if memory is None and utilization is None:
        return None
    parts = [format_memory(memory) if memory is not None else "?"]
    if utilization is not None:
        parts.append(f"{utilization:.0f}%")
    return ", ".join(parts)


def _cut(value: object, width: int | None = 40) -> str:
    text = "-" if value is None or value == "" else str(value).replace("\n", " ")
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], width: int | None = 40) -> str:
    """Align columns under a header; cells longer than ``width`` are cut (None: never).

    >>> print(table(["id", "state"], [[1, "finished"], [12, "queued"]]))
    id  state
    1   finished
    12  queued
    >>> print(table(["id", "error"], [[1, "x" * 50]], width=10))
    id  error
    1   xxxxxxxxx…
    """
    cells = [[str(h) for h in header], *([_cut(c, width) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def cell_width() -> int | None:
    """Cells are cut to fit a terminal; piped into another program, they are whole."""
    return 40 if sys.stdout.isatty() else None


def listing(header: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> None:
    print(table(header, rows, cell_width()) if rows else empty)


def print_json(items: Sequence[BaseModel] | BaseModel) -> None:
    """Listings as JSON for scripts (``--json``): the gateway's own fields, untruncated."""
    data: Any
    if isinstance(items, BaseModel):
        data = items.model_dump(mode="json")
    else:
        data = [item.model_dump(mode="json") for item in items]
    print(json.dumps(data, indent=2))
