"""notebooks/quickstart.ipynb, executed in a real Jupyter kernel against a real gateway."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from support.harness import GatewayProcess

pytestmark = [
    pytest.mark.integration,
    # jupyter_client / zmq deprecations on kernel start-up are not ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "quickstart.ipynb"


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_quickstart_notebook_runs_cells_remotely(
    gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", gateway.user_token)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert _text(code[1]).strip() == "9"
    assert _text(code[2]).strip() == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]"
    assert _text(code[3]).strip() == "squaring 3"
    assert _text(code[4]).strip() == "[30.0, 50.0]"  # a closure over a cell's variable
    assert _text(code[5]).startswith("16\n")
    assert "'finished', 'local', 1)" in _text(code[5])
