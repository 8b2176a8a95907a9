"""farside pilot: runs on a batch slot, pulls work from the gateway over HTTPS, runs it.

It never imports ``farside_gateway``; its whole contract is ``farside_pilot.protocol`` and
the ``FARSIDE_*`` environment variables.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    # one version for client, gateway and pilot: the installed distribution's
    __version__ = version("farside")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
