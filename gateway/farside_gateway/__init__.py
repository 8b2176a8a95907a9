"""farside workload gateway: a durable pool of work behind a REST API, brokerage,
provisioning of pilots on sites, and event streams back to users."""

__version__ = "0.1.0"
