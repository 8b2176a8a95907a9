"""Token files for a client in the gateway's account: tokens (mode 0600) and the client's
``client.json``, written by ``farside gateway --token-dir`` and by ``farside up`` (in the
user's config directory, so ``farside.Gateway()`` in the same account connects with no
arguments):

* ``user.token``: a user token for the account, with admin rights on this gateway;
* ``pilot.token``: a site token for the ``local`` site, to start pilots by hand
  (``FARSIDE_PILOT_TOKEN=$(cat pilot.token) farside pilot``);
* ``client.json``: ``{"url": ..., "token_file": ...}``.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

from sqlalchemy import Connection

from .auth.tokens import new_token, store_token


def _read_or_create(path: Path, kind: str) -> str:
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
        path.unlink()
    token = new_token("user" if kind == "user" else "site")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


class TokenFiles:
    """The user and pilot tokens of a local platform, kept in ``directory``."""

    def __init__(self, directory: Path, user: str | None = None, site: str = "local") -> None:
        self.directory = directory
        self.user = user or getpass.getuser()
        self.site = site
        self.user_token_path = directory / "user.token"
        self.pilot_token_path = directory / "pilot.token"
        self.user_token = _read_or_create(self.user_token_path, "user")
        self.pilot_token = _read_or_create(self.pilot_token_path, "site")

    def register(self, conn: Connection) -> None:
        """Make the database accept both tokens (idempotent)."""
        store_token(
            conn,
            self.user_token,
            "user",
            self.user,
            admin=True,
            description="local platform user",
        )
        store_token(conn, self.pilot_token, "site", self.site, description="local platform pilots")

    def write_client_config(self, url: str) -> Path:
        path = self.directory / "client.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": url, "token_file": str(self.user_token_path)}))
        tmp.replace(path)
        return path
