"""What the tests share: real gateways and pilots (:mod:`support.harness`), the real
services the suites start through the project's scripts (PostgreSQL, Slurm, HTCondor,
Kubernetes, an OIDC provider, JupyterHub, Chromium), and the authorization matrix.

Modules that define fixtures are loaded as plugins by ``tests/conftest.py``
(``pytest_plugins``), so a test names a fixture without importing it.
"""
