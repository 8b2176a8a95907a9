"""Brokerage: which sites can run a job, and which job a pilot gets next.

Matching a pilot to jobs happens in SQL (``pool.acquire.acquire``: jobs that fit the slot,
best priority first, then oldest). This package holds the checks made at submission.
"""
