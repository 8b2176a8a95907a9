"""The packages' layering, checked on their import statements: the wire contract
(``farside_protocol``) imports none of the others, the pilot only the contract (it runs on
batch nodes where the gateway is not installed), and the client never the gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = {
    "farside_protocol": ROOT / "gateway" / "farside_protocol",
    "farside_pilot": ROOT / "gateway" / "farside_pilot",
    "farside_gateway": ROOT / "gateway" / "farside_gateway",
    "farside": ROOT / "extension" / "farside",
}
#: package -> the farside packages it may import
ALLOWED = {
    "farside_protocol": set(),
    "farside_pilot": {"farside_protocol"},
    "farside": {"farside_protocol"},
    "farside_gateway": {"farside_protocol", "farside_pilot", "farside"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """The farside packages a module imports (absolute imports), with their lines."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.partition(".")[0]
            if top in PACKAGES:
                found.add((top, node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_beneath_it(package: str) -> None:
    wrong = []
    for path in sorted(PACKAGES[package].rglob("*.py")):
        for imported, line in imported_packages(path):
            if imported != package and imported not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom farside_gateway.pool import submit\n")
    assert imported_packages(module) == {("farside_gateway", 2)}
