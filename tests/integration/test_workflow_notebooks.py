"""The workflow notebooks (notebooks/hpo.ipynb, active_learning.ipynb, gpu_ml.ipynb),
executed in a real Jupyter kernel against a real gateway whose pilots run their loops and
evaluations; each notebook's ``parameters`` cell is replaced to keep them small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import farside
from support.harness import GatewayProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.docs,
    # jupyter_client / zmq deprecations on kernel start-up are not ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
#: the loop's body holds one pilot while the evaluations run on the others
SITES = [
    {
        "name": "local",
        "plugin": "local",
        "cores": 1,
        "memory": "3 GiB",
        "min_warm": 3,
        "max_pilots": 4,
        "idle_timeout": 120,
    }
]


@pytest.fixture
def database_url() -> None:
    """SQLite only: the notebooks exercise the client and the pilots, not the database."""
    return None


def _run(name: str, parameters: str, gateway: GatewayProcess, workdir: Path) -> list[Any]:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    cell.source = parameters
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": workdir}}
    ).execute()
    return [c for c in notebook.cells if c.cell_type == "code"]


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_hpo_notebook(make_gateway: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    gateway = make_gateway(sites=SITES)
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", gateway.user_token)
    cells = _run("hpo.ipynb", "N_ITER = 3\nBATCH = 4\nSEED = 11", gateway, tmp_path)
    assert "'trials': 12" in _text(cells[-2])
    assert _text(cells[-1]).startswith("finished {'finished': 12} report: 3")
    with farside.Gateway(gateway.url, gateway.user_token, set_as_default=False) as gw:
        (run,) = gw.workflows()
    assert (run.name, run.state.value, run.children) == ("optimise", "finished", {"finished": 12})


def test_active_learning_notebook(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gateway = make_gateway(sites=SITES)
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", gateway.user_token)
    parameters = "GRID = 8\nN_ITER = 2\nBATCH = 4\nSEED = 3"
    cells = _run("active_learning.ipynb", parameters, gateway, tmp_path)
    assert "evaluated 12 of 64 grid points" in _text(cells[-3])
    agreement = _text(cells[-2])
    assert agreement.startswith("the surrogate classifies"), agreement
    share = int(agreement.split("classifies ")[1].split("%")[0])
    assert share >= 80, agreement  # 12 of 64 points evaluated: the contour, near enough


def test_gpu_ml_notebook_falls_back_to_cpus(
    make_gateway: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # no GPU site here: the same jobs train on CPUs (tests/gpu/run_on_device.sh: on a GPU)
    gateway = make_gateway(sites=SITES)
    monkeypatch.setenv("FARSIDE_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", gateway.user_token)
    cells = _run("gpu_ml.ipynb", "EPOCHS = 200\nWIDTHS = [16, 32]", gateway, tmp_path)
    assert "none, training on CPUs" in _text(cells[1])
    lines = _text(cells[2]).splitlines()
    assert len(lines) == 2
    for line in lines:
        assert " on cpu, CUDA_VISIBLE_DEVICES=None" in line, line
        accuracy = float(line.split("accuracy ")[1].split(" ")[0])
        assert accuracy > 0.8, line
    used = _text(cells[3]).splitlines()
    assert len(used) == 2, used
    assert all(line.endswith("None None") for line in used), used
