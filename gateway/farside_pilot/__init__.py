"""farside pilot: runs on a batch slot, pulls work from the gateway over HTTPS, runs it.

It never imports ``farside_gateway``; its whole contract is ``farside_protocol`` and
the ``FARSIDE_*`` environment variables.
"""

from farside_protocol import __version__

__all__ = ["__version__"]
