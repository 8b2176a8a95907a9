"""Where the client finds its gateway: explicit arguments, then the environment, then a file.

Each of the address and the token is resolved on its own, first match wins:

1. the argument given to :class:`farside.Gateway` (``url=``, ``token=``);
2. the environment: ``FARSIDE_GATEWAY_URL`` and ``FARSIDE_TOKEN``; for the address, then
   Dask's configuration key ``farside.address`` (``~/.config/dask/*.yaml`` or
   ``DASK_FARSIDE__ADDRESS``, see :mod:`farside._dask_config`);
3. the local platform's file ``client.json`` in ``$FARSIDE_CONFIG_DIR`` (default: the
   platform's user config directory, ``~/.config/farside`` on Linux), written by
   ``farside up``::

       {"url": "http://127.0.0.1:8765", "token_file": "/home/me/.config/farside/user.token"}

   The token file holds the token on one line and should be readable only by its owner
   (mode 0600). A relative ``token_file`` is taken relative to the config directory.
4. the OIDC access token of ``farside login`` (``oidc-token.json`` in the same directory),
   refreshed when it is about to expire; it is used only for the gateway it was obtained
   for, and gives that gateway's address when nothing else does (:mod:`farside._tokens`).

>>> resolve_config(url="http://gw:8765/", token="t0k").url
'http://gw:8765'
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from farside_protocol import ConfigurationError, env

from ._dask_config import setting
from ._paths import client_file, config_dir
from ._tokens import cached_token, hub_renewed

__all__ = ["ClientConfig", "client_file", "config_dir", "resolve_config", "resolve_url"]


@dataclass(frozen=True)
class ClientConfig:
    """A resolved gateway address and token, and where each came from (for messages).

    The token stays out of the repr, so it never lands in a notebook's saved output:

    >>> config = resolve_config(url="http://gw:8765", token="s3cr3t")
    >>> config
    ClientConfig(url='http://gw:8765', token=<hidden>, ...)
    >>> config.token
    's3cr3t'
    """

    url: str
    token: str = field(repr=False)
    url_source: str
    token_source: str

    def __repr__(self) -> str:
        return (
            f"ClientConfig(url={self.url!r}, token=<hidden>, url_source={self.url_source!r}, "
            f"token_source={self.token_source!r})"
        )


def _read_client_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(
            f"{path} is not valid JSON ({exc}); run `farside up` again to rewrite it"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object with 'url' and 'token_file'")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the token file {path}: {exc}. Run `farside up` again, or set {env.TOKEN}."
        ) from exc
    if not token:
        raise ConfigurationError(f"the token file {path} is empty; run `farside up` again")
    return token


def resolve_config(url: str | None = None, token: str | None = None) -> ClientConfig:
    """Resolve the gateway address and token (explicit > environment > ``client.json``;
    for the address, Dask's ``farside.address`` comes before ``client.json``).

    Raises :class:`~farside.ConfigurationError` saying what to do when either is missing.
    """
    url_source = "the url= argument"
    token_source = "the token= argument"
    if not url and os.environ.get(env.GATEWAY_URL):
        url, url_source = os.environ[env.GATEWAY_URL], f"${env.GATEWAY_URL}"
    if not url and (configured := _dask_address()):
        url, url_source = configured, "Dask's configuration (farside.address)"
    if not token and os.environ.get(env.TOKEN):
        # in a hub server: renewed through the hub
        token, token_source = hub_renewed(os.environ[env.TOKEN]), f"${env.TOKEN}"
    if not url or not token:
        path = client_file()
        data = _read_client_file(path)
        if not url and data.get("url"):
            url, url_source = data["url"], str(path)
        if not token:
            if data.get("token"):
                token, token_source = data["token"], str(path)
            elif data.get("token_file"):
                token_path = Path(data["token_file"]).expanduser()
                if not token_path.is_absolute():
                    token_path = path.parent / token_path
                token, token_source = _read_token_file(token_path), str(token_path)
    if not token:
        found = cached_token(url)
        if found is not None:
            token, token_source, login_url = found
            if not url and login_url:
                url, url_source = login_url, token_source
    if not url:
        raise ConfigurationError(
            "no farside gateway is configured. Run `farside up` to start a local one, "
            f"`farside login --url URL` for a remote one, or set {env.GATEWAY_URL} and "
            f"{env.TOKEN} (looked for {client_file()})."
        )
    if not token:
        raise ConfigurationError(
            f"no token for the farside gateway at {url}. Run `farside login`, set {env.TOKEN}, "
            f"pass token=, or run `farside up` to write {client_file()}."
        )
    return ClientConfig(url.rstrip("/"), token.strip(), url_source, token_source)


def _dask_address() -> str | None:
    address = setting("address")
    return str(address) if address else None


def resolve_url(url: str | None = None) -> str | None:
    """The gateway address alone (argument > environment > Dask's ``farside.address`` >
    ``client.json``), or None."""
    if url:
        return url.rstrip("/")
    if os.environ.get(env.GATEWAY_URL):
        return os.environ[env.GATEWAY_URL].rstrip("/")
    if configured := _dask_address():
        return configured.rstrip("/")
    found = _read_client_file(client_file()).get("url")
    return found.rstrip("/") if found else None
