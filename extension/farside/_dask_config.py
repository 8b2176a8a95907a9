"""farside's keys in Dask's configuration (``farside.address``, ``farside.cluster.*``,
``farside.offload``), as dask-gateway keeps ``gateway.*``.

The defaults ship in ``farside.yaml`` beside this module and are registered with
``dask.config.update_defaults`` the first time a key is read, so a user's
``~/.config/dask/*.yaml``, ``DASK_FARSIDE__*`` variables and ``dask.config.set`` override
them as for any Dask setting. Dask is optional for the client: without it, every key reads
as None and the code's own defaults apply (the same values as the file's).
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Any

__all__ = ["cluster_setting", "setting"]


@functools.cache
def _registered() -> bool:
    try:
        import dask.config
        import yaml  # a dependency of dask's
    except ImportError:
        return False
    text = files("farside").joinpath("farside.yaml").read_text()
    dask.config.update_defaults(yaml.safe_load(text))
    return True


def setting(key: str) -> Any:
    """The value of ``farside.<key>`` (dots for nesting), or None without Dask."""
    if not _registered():
        return None
    import dask.config

    return dask.config.get(f"farside.{key}", default=None)


def cluster_setting(name: str, given: Any) -> Any:
    """A ``new_cluster`` argument: the one given, else ``farside.cluster.<name>``."""
    return given if given is not None else setting(f"cluster.{name.replace('_', '-')}")
