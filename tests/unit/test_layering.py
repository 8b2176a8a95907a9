"""The packages' layering, checked on their import statements: the wire contract
(``farside_protocol``) imports none of the others, the pilot only the contract (it runs on
batch nodes where the gateway is not installed), the client and the gateway never each
other; ``farside up`` (``farside_platform``) sits above both."""

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
    "farside_platform": ROOT / "gateway" / "farside_platform",
}
#: package -> the farside packages it may import
ALLOWED = {
    "farside_protocol": set(),
    "farside_pilot": {"farside_protocol"},
    "farside": {"farside_protocol"},
    "farside_gateway": {"farside_protocol", "farside_pilot"},
    # farside up: a gateway, and the client for its example
    "farside_platform": {"farside_protocol", "farside_gateway", "farside"},
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


# ---------------------------------------------------------------- inside the client

CLIENT = PACKAGES["farside"]
#: the client's layers, bottom first: a module imports its own layer and those beneath
CLIENT_LAYERS: list[set[str]] = [
    # connection, tokens, configuration, the wire, logs, outcomes
    {"_paths", "_tokens", "_dask_config", "_config", "_http", "_events", "_logs", "_outcome"}
    | {"_progress", "_journal", "_profile", "_cli_format", "datasets"},
    # the gateway and its jobs' futures
    {"_futures", "_resolution", "_gateway"},
    # what runs on it: tasks, offloaded graphs, workflows, Dask clusters
    {"_task", "_offload", "_offload_plan", "_offload_progress", "_workflow", "_cluster"},
    # farside.Gateway: the gateway with its shortcuts to what runs on it
    {"_client"},
    # what shows it: widgets, the command line, the package's face
    {"widgets", "_cluster_widget", "_cli", "_cli_platform", "_cli_workflows", "_login"}
    | {"__init__", "__main__"},
]
#: modules that need an optional extra (dask, distributed, ipywidgets): the only ones a
#: function may import, so that `import farside` works without the extra
OPTIONAL = {"_cluster", "_cluster_widget", "widgets", "_offload", "_offload_plan"}
OPTIONAL |= {"_offload_progress"}


def _client_module(path: Path) -> str:
    relative = path.relative_to(CLIENT)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def _layer(module: str) -> int:
    found = [n for n, members in enumerate(CLIENT_LAYERS) if module in members]
    assert found, f"farside/{module} is in no layer of CLIENT_LAYERS: place it"
    return found[0]


def client_imports(path: Path, depth: int | None = None) -> list[tuple[str, int, str]]:
    """Each relative import of a client module: (target, line, where), where is "top",
    "function" or "typing" (under ``if TYPE_CHECKING:``, types only). ``depth``: how deep
    the module sits in the client (1: farside/x.py; default: from its path)."""
    tree = ast.parse(path.read_text(), str(path))
    where: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                where.setdefault(id(inner), "function")
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for inner in ast.walk(node):
                where[id(inner)] = "typing"
    # in widgets/x.py the client is "..", in x.py it is "."
    inside_package = depth if depth is not None else len(path.relative_to(CLIENT).parts)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.level == inside_package:  # from ._x import / from .._x import
            targets = [node.module.partition(".")[0]] if node.module else []
            targets += [] if node.module else [alias.name for alias in node.names]
        else:  # within widgets/: its own modules
            targets = ["widgets"]
        for target in targets:
            found.append((target, node.lineno, where.get(id(node), "top")))
    return found


def test_client_modules_import_only_their_layer_and_those_beneath() -> None:
    wrong = []
    for path in sorted(CLIENT.rglob("*.py")):
        module = _client_module(path)
        if module == "examples":
            continue
        for target, line, where in client_imports(path):
            if target == module or where == "typing":
                continue
            upward = _layer(target) > _layer(module)
            if where == "function" and target in OPTIONAL and target not in {module}:
                continue  # an optional extra, loaded when it is used
            if upward or where == "function":
                why = "imports upward" if upward else "imports inside a function"
                wrong.append(f"farside/{path.relative_to(CLIENT)}:{line} {why}: {target}")
    assert not wrong, "\n".join(wrong)


def test_the_client_check_tells_top_function_and_typing_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nfrom ._http import Api\n"
        "if TYPE_CHECKING:\n    from ._gateway import Gateway\n"
        "def f():\n    from ._task import Task\n"
    )
    found = {(target, where) for target, _, where in client_imports(probe, depth=1)}
    assert found == {("_http", "top"), ("_gateway", "typing"), ("_task", "function")}
    assert _layer("_task") > _layer("_gateway") > _layer("_http")
