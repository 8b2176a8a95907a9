"""farside's JupyterHub side: OIDC login, the user's token handed to their server, profiles,
and the gateway registered as a hub service.

One entry point, used from ``jupyterhub_config.py``::

    import farside_hub
    farside_hub.configure(
        c,
        gateway_url="https://farside.example.org",
        issuer="https://iam.example.org/",
        client_id="jupyterhub",
        client_secret=os.environ["FARSIDE_HUB_CLIENT_SECRET"],
    )

See ``docs/how-to/jupyterhub.md`` for the picture and every option.
"""

from ._auth import FarsideOAuthenticator
from ._config import SERVICE_NAME, configure
from ._profiles import DEFAULT_PROFILES, Profile

__all__ = ["DEFAULT_PROFILES", "SERVICE_NAME", "FarsideOAuthenticator", "Profile", "configure"]
