"""HTTP handlers: parse, call the pool, serialise. No SQL here."""
