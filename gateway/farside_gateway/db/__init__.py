"""Persistence: the schema, migrations, and the executor that runs transactions."""

from .engine import Database, migrate
from .schema import metadata

__all__ = ["Database", "metadata", "migrate"]
