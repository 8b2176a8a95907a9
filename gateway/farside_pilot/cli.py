"""``farside pilot``: start a pilot from the command line (also ``python -m farside_pilot``)."""

from __future__ import annotations

import asyncio
import logging
import sys

from farside_protocol.errors import ConfigurationError

from .config import load_config
from .pilot import Pilot


def main(argv: list[str] | None = None) -> int:
    """Run a pilot until it leaves; returns the process exit code."""
    try:
        config = load_config(argv)
    except ConfigurationError as exc:
        print(f"farside pilot: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s farside-pilot[%(process)d] %(name)s: %(message)s",
    )
    # one line per HTTP request would drown the pilot's own story; keep httpx's warnings
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    return asyncio.run(Pilot(config).run())
