"""``farside up``: the local platform, a wing above the gateway and the client.

It runs a gateway on embedded defaults (SQLite in the user's data directory, a ``local``
site of subprocess pilots), writes the account's tokens and ``client.json`` so that
``farside.Gateway()`` connects with no arguments, optionally puts JupyterHub in front
(:mod:`farside_platform.hub`), and can run a small example with the client
(:mod:`farside_platform.example`). The gateway itself imports neither this package nor the
client.
"""
