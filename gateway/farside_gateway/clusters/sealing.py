"""Cluster TLS keys sealed at rest: what the database holds is ciphertext.

A cluster's private key lets whoever holds it join the cluster as a client and run code on
its workers, as the cluster's owner. The gateway keeps it in the database (so that any
replica can hand it to the owner) and in each worker lease, so both hold it sealed with
Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) and open it only where it is
used: starting the scheduler, answering the owner's credentials request, and the lease a
pilot takes (over the pilot's HTTPS connection).

The keys come from ``[clusters] encryption_keys``: the first seals, all open (rotate by
putting a new key first). Without any, each gateway process makes a random key of its own:
enough for one gateway, whose clusters end with it anyway, but replicas sharing a database
need the same configured keys to read each other's clusters.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from farside_protocol import ServerError

#: what sealed text starts with; a PEM key (written before sealing existed) starts "-----"
PREFIX = "fernet:"


class SealError(ServerError):
    """Sealed text that none of the configured keys opens."""


def _fernet(secret: str) -> Fernet:
    # any passphrase works: Fernet wants 32 url-safe base64 bytes, which SHA-256 gives
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


class Sealer:
    """Seals and opens short secrets (PEM keys) with the configured keys."""

    def __init__(self, secrets: list[str]) -> None:
        if not secrets:
            secrets = [Fernet.generate_key().decode()]
            self.ephemeral = True
        else:
            self.ephemeral = False
        self._box = MultiFernet([_fernet(s) for s in secrets])

    def seal(self, text: str) -> str:
        return PREFIX + self._box.encrypt(text.encode()).decode()

    def open_ticket(self, text: str, max_age: float) -> str:
        """The plain text of a ticket sealed here at most ``max_age`` seconds ago; raises
        :class:`SealError` for anything else (unlike :meth:`open`, plain text is refused)."""
        if not text.startswith(PREFIX):
            raise SealError("not a sealed ticket")
        try:
            return self._box.decrypt(text[len(PREFIX) :].encode(), ttl=int(max_age)).decode()
        except InvalidToken:
            raise SealError("the ticket is expired, or not sealed by this gateway") from None

    def open(self, text: str) -> str:
        """The plain text of ``text``; text that was never sealed comes back as it is."""
        if not text.startswith(PREFIX):
            return text
        try:
            return self._box.decrypt(text[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SealError(
                "a cluster's TLS key was sealed with an encryption key this gateway does not "
                "have: give every replica the same [clusters] encryption_keys (keep old keys "
                "after a new first one while clusters sealed with them live)"
            ) from None
