"""Generate the reference pages that are written down once, in the code.

``python -m farside_gateway.docgen`` (re)writes, under ``docs/reference/``:

* ``configuration.md`` from :class:`~farside_gateway.config.GatewayConfig` and
  :class:`~farside_gateway.config.SiteConfig` (field types, defaults, descriptions) and the
  example in :mod:`farside_gateway.config`'s docstring, which is validated on the way;
* ``environment.md`` from :data:`farside_protocol.env.VARIABLES`;
* ``rest-api.md`` and ``openapi.json`` from the OpenAPI document of the ASGI app that
  :func:`farside_gateway.app.create_app` builds (no server is started);
* ``helm-values.md``, and beside the docs the Helm chart's ``values.yaml`` and
  ``values.schema.json``, from :mod:`farside_gateway.docgen.helm_values` (whose schema
  embeds the gateway's own settings models), written by :mod:`.helm_files`.

``--check`` writes nothing: it exits 1 and names the files that are missing or differ from
what the code says, so CI fails when a field changes and the docs were not regenerated.

A field whose default is computed (``default_factory``) is documented by the factory's
docstring, or by ``json_schema_extra={"doc_default": "..."}`` on the field; the computed
value itself depends on the machine and is never written into the docs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .helm_files import helm_values_md, values_schema_json, values_yaml
from .markdown import COMMAND, REFERENCE
from .rest import openapi_json, openapi_spec, rest_api_md
from .settings import config_example, configuration_md, environment_md

__all__ = ["COMMAND", "config_example", "configuration_md", "generate", "main", "stale_files"]

# ---------------------------------------------------------------- driver

#: the chart's generated files, relative to the docs directory like the pages
CHART = Path("..") / "charts" / "farside"


def generate() -> dict[Path, str]:
    """Every generated file, by path relative to the docs directory."""
    spec = openapi_spec()
    return {
        REFERENCE / "configuration.md": configuration_md(),
        REFERENCE / "environment.md": environment_md(),
        REFERENCE / "rest-api.md": rest_api_md(spec),
        REFERENCE / "openapi.json": openapi_json(spec),
        REFERENCE / "helm-values.md": helm_values_md(),
        CHART / "values.yaml": values_yaml(),
        CHART / "values.schema.json": values_schema_json(),
    }


def stale_files(docs_dir: Path, files: dict[Path, str] | None = None) -> list[Path]:
    """Generated files under ``docs_dir`` that are missing or differ from the code."""
    files = generate() if files is None else files
    stale = []
    for rel, text in files.items():
        path = docs_dir / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(path)
    return stale


def write(docs_dir: Path) -> list[Path]:
    """Write the generated files that changed; return their paths."""
    files = generate()
    changed = stale_files(docs_dir, files)
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path.relative_to(docs_dir)], encoding="utf-8")
    return changed


def default_docs_dir() -> Path:
    """``docs/`` of the source checkout this module lives in, else of the working directory."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file():
        return root / "docs"
    return Path.cwd() / "docs"


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Generate docs/reference/ from the code."
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    parser.add_argument("--docs", type=Path, help="docs directory (default: the checkout's)")
    args = parser.parse_args(argv)
    docs_dir: Path = args.docs or default_docs_dir()
    if args.check:
        stale = stale_files(docs_dir)
        for path in stale:
            out(f"stale: {path} (run `{COMMAND}`)")
        return 1 if stale else 0
    for path in write(docs_dir):
        out(f"wrote {path}")
    return 0
