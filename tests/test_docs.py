"""The generated reference pages match the code they are generated from.

A changed config field, environment variable or endpoint fails here until
``python -m farside_gateway.docgen`` is run and its output committed.
"""

from __future__ import annotations

from pathlib import Path

from farside_gateway import docgen

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_generated_reference_is_current() -> None:
    stale = docgen.stale_files(DOCS)
    assert not stale, f"regenerate with `{docgen.COMMAND}`: " + ", ".join(map(str, stale))


def test_check_names_stale_files(tmp_path: Path) -> None:
    assert docgen.main(["--docs", str(tmp_path)], out=lambda _: None) == 0
    page = tmp_path / "reference" / "configuration.md"
    page.write_text(page.read_text().replace("heartbeat_timeout", "heartbeat_tmo"))
    said: list[str] = []
    assert docgen.main(["--check", "--docs", str(tmp_path)], out=said.append) == 1
    assert said == [f"stale: {page} (run `{docgen.COMMAND}`)"]


def test_every_setting_is_documented() -> None:
    from farside_gateway.config import GatewayConfig, SiteConfig

    page = docgen.configuration_md()
    for model in (GatewayConfig, SiteConfig):
        for name, field in model.model_fields.items():
            assert f"`{name}`" in page
            assert field.description, f"{model.__name__}.{name} has no description"
