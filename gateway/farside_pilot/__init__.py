"""farside pilot: runs on a batch slot, pulls work from the gateway over HTTPS, runs it.

It never imports ``farside_gateway``; its whole contract is ``farside_pilot.protocol`` and
the ``FARSIDE_*`` environment variables.
"""

__version__ = "0.1.0"
