"""farside workload gateway: a durable pool of work behind a REST API, brokerage,
provisioning of pilots on sites, and event streams back to users."""

from farside_protocol import __version__

__all__ = ["__version__"]
