"""What a JupyterHub-spawned server's profile tells the client: job defaults.

``farside_hub`` starts each user's server with environment variables (its
``docs/how-to/jupyterhub.md`` lists them). :func:`task_defaults` reads
``FARSIDE_DEFAULT_ENV`` and ``FARSIDE_DEFAULT_GPUS``, set by the profile the user chose on
the spawn page, as defaults for ``@farside.task``. (The token the hub hands the server is
kept fresh by :mod:`farside._tokens`.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

DEFAULT_ENV = "FARSIDE_DEFAULT_ENV"
DEFAULT_GPUS = "FARSIDE_DEFAULT_GPUS"
#: a token closer than this to its expiry is renewed (a job submission may take a while)
MIN_LIFETIME = 120.0


def task_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``env`` and ``gpus`` for a task that names neither, from the hub profile; empty
    outside a hub. A malformed value is ignored rather than failing every task.

    >>> task_defaults({"FARSIDE_DEFAULT_ENV": "ml", "FARSIDE_DEFAULT_GPUS": "1"})
    {'env': 'ml', 'gpus': 1}
    >>> task_defaults({"FARSIDE_DEFAULT_GPUS": "many"})
    {}
    """
    environ = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    if environ.get(DEFAULT_ENV, "").strip():
        found["env"] = environ[DEFAULT_ENV].strip()
    gpus = environ.get(DEFAULT_GPUS, "").strip()
    if gpus.isdigit() and int(gpus) > 0:
        found["gpus"] = int(gpus)
    return found
