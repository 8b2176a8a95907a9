"""Bearer tokens: users, sites (may register pilots) and pilots (may act for one pilot).

Only a token's SHA-256 is stored, so a copy of the database grants nothing. The prefix
(``fsu_``, ``fss_``, ``fsp_``) tells a reader which kind a token is without a lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypedDict, TypeVar, Unpack

from sqlalchemy import Connection, delete, insert, select

from farside_protocol.models import TOKEN_PREFIXES
from farside_protocol.states import ACTIVE_STATES

from ..db.schema import jobs, tokens

V = TypeVar("V")

TokenKind = Literal["user", "site", "pilot"]


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``name`` is the user, or the site of a site or pilot token."""

    kind: TokenKind
    name: str
    admin: bool = False
    pilot_id: int | None = None
    #: fair-share groups (user tokens); the first one counts for fair share
    groups: tuple[str, ...] = ()
    #: when the token expires (farside tokens with a TTL); a cached lookup ends there too
    expires_at: float | None = field(default=None, compare=False, repr=False)
    #: a workflow body's token: it acts for the user only within this run (api.scope)
    workflow_id: int | None = None

    @property
    def share_group(self) -> str | None:
        return self.groups[0] if self.groups else None

    @property
    def owner_filter(self) -> str | None:
        """The owner a query must be limited to; None for admins (they see every job)."""
        return None if self.admin else self.name


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(kind: TokenKind) -> str:
    return TOKEN_PREFIXES[kind] + secrets.token_urlsafe(32)


class TokenOptions(TypedDict, total=False):
    admin: bool  # a user who sees every job
    pilot_id: int | None  # a pilot token acts for this pilot only
    ttl: float | None  # seconds until it expires; None: never
    description: str | None
    groups: list[str]  # fair-share groups of a user
    job_id: int | None  # a workflow body's token: valid while this job's attempt runs
    job_attempt: int | None


def store_token(
    conn: Connection, token: str, kind: TokenKind, subject: str, **options: Unpack[TokenOptions]
) -> None:
    """Record a token (idempotent: an existing identical token is replaced)."""
    digest = hash_token(token)
    now = time.time()
    ttl = options.get("ttl")
    conn.execute(delete(tokens).where(tokens.c.token_hash == digest))
    conn.execute(
        insert(tokens).values(
            token_hash=digest,
            kind=kind,
            subject=subject,
            admin=options.get("admin", False),
            pilot_id=options.get("pilot_id"),
            created_at=now,
            expires_at=now + ttl if ttl else None,
            description=options.get("description"),
            groups=_groups_column(options.get("groups") or []),
            job_id=options.get("job_id"),
            job_attempt=options.get("job_attempt"),
        )
    )


def _groups_column(groups: list[str]) -> str | None:
    return "," + ",".join(groups) + "," if groups else None


def issue_token(
    conn: Connection, kind: TokenKind, subject: str, **options: Unpack[TokenOptions]
) -> str:
    """Make a new token, record it, and return it (the only time it is seen in clear)."""
    token = new_token(kind)
    store_token(conn, token, kind, subject, **options)
    return token


def lookup_token(conn: Connection, token: str, now: float) -> Principal | None:
    row = conn.execute(select(tokens).where(tokens.c.token_hash == hash_token(token))).first()
    if row is None or (row.expires_at is not None and row.expires_at < now):
        return None
    workflow_id = None
    if row.job_id is not None:
        # a workflow body's token dies with its attempt: a body still running after its
        # pilot was lost (and the body started again elsewhere) can submit nothing more
        body = conn.execute(
            select(jobs.c.workflow_id).where(
                jobs.c.id == row.job_id,
                jobs.c.attempt == row.job_attempt,
                jobs.c.state.in_([s.value for s in ACTIVE_STATES]),
            )
        ).first()
        if body is None:
            return None
        workflow_id = body.workflow_id
    groups = tuple(g for g in (row.groups or "").split(",") if g)
    return Principal(
        kind=row.kind,
        name=row.subject,
        admin=row.admin,
        pilot_id=row.pilot_id,
        groups=groups,
        expires_at=row.expires_at,
        workflow_id=workflow_id,
    )


def revoke_pilot_tokens(conn: Connection, pilot_id: int) -> None:
    conn.execute(delete(tokens).where(tokens.c.pilot_id == pilot_id))


class ExpiringEntries(Generic[V]):
    """Values kept by key until each one's own deadline. Memory stays bounded whatever
    callers send: at ``limit`` entries it starts afresh (a cache, so losing it is safe)."""

    def __init__(self, limit: int = 100_000) -> None:
        # above the tokens a large pool uses at once (10,000 pilots beating, their users),
        # which would otherwise clear it over and over; ~25 MB at the limit
        self.limit = limit
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str, now: float) -> tuple[bool, V | None]:
        """``(True, value)`` while the entry lives, else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < now:
            return False, None
        return True, entry[1]

    def put(self, key: str, value: V, until: float) -> None:
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (until, value)

    def drop(self, unwanted: Callable[[V], bool]) -> None:
        for key, (_, value) in list(self._entries.items()):
            if unwanted(value):
                del self._entries[key]


class TokenCache:
    """Remembers recent lookups for a few seconds, so a request costs no extra query.

    Revocations made by this gateway take effect at once (``forget``); those made by
    another replica within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 10.0, pilot_ttl: float = 60.0) -> None:
        self.ttl = ttl
        # a pilot's token acts only on that pilot, whose own state (ended: told to retire)
        # every heartbeat reads anyway; keeping it longer spares 10,000 pilots a lookup
        # per beat
        self.pilot_ttl = pilot_ttl
        self._entries: ExpiringEntries[Principal | None] = ExpiringEntries()

    def get(self, token: str, now: float) -> tuple[bool, Principal | None]:
        return self._entries.get(token, now)

    def put(self, token: str, principal: Principal | None, now: float) -> None:
        pilot = principal is not None and principal.kind == "pilot"
        until = now + (self.pilot_ttl if pilot else self.ttl)
        if principal is not None and principal.expires_at is not None:
            until = min(until, principal.expires_at)  # never past the token's expiry
        self._entries.put(token, principal, until)

    def forget_workflow(self, workflow_id: int) -> None:
        """A run was paused or killed: its body's token must stop working here at once."""
        self._entries.drop(lambda p: p is not None and p.workflow_id == workflow_id)

    def forget_pilot(self, pilot_id: int) -> None:
        self._entries.drop(lambda p: p is not None and p.pilot_id == pilot_id)
