"""Where the client keeps its files: ``$FARSIDE_CONFIG_DIR``, else the platform's user
config directory (``~/.config/farside`` on Linux). The bottom of the client's layers: both
the configuration (``client.json``) and the token cache (``oidc-token.json``) live here."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from farside_protocol import env

CLIENT_FILE = "client.json"
TOKEN_FILE = "oidc-token.json"


def config_dir() -> Path:
    """The directory of ``client.json``: ``$FARSIDE_CONFIG_DIR`` or the user config dir."""
    explicit = os.environ.get(env.CONFIG_DIR)
    if explicit:
        return Path(explicit).expanduser()
    return Path(platformdirs.user_config_dir("farside"))


def client_file() -> Path:
    """``farside up``'s file naming the local gateway and its token file."""
    return config_dir() / CLIENT_FILE


def token_file() -> Path:
    """``farside login``'s token cache (mode 0600)."""
    return config_dir() / TOKEN_FILE
