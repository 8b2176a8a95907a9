"""notebooks/dimuon.ipynb, executed in a real Jupyter kernel against a real gateway, on
small data: its ``parameters`` cell is replaced before it runs."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from support.harness import GatewayProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.dask,
    # jupyter_client / zmq deprecations on kernel start-up are not ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

NOTEBOOK = Path(__file__).parents[2] / "notebooks" / "dimuon.ipynb"
N_FILES = 2
EVENTS_PER_FILE = 5_000


@pytest.fixture
def database_url() -> None:
    """SQLite only: the notebook exercises the client and the pilots, not the database."""
    return None


def _outputs(cells: list[nbformat.NotebookNode], kind: str) -> str:
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == kind:
                parts.append(output["text"])
    return "".join(parts)


def _run(notebook: nbformat.NotebookNode, data_dir: Path, workdir: Path) -> None:
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = (
        f"N_FILES = {N_FILES}\nEVENTS_PER_FILE = {EVENTS_PER_FILE}\nSEED = 3\n"
        f"DATA_DIR = {str(data_dir)!r}"
    )
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": workdir}}
    )
    client.execute()


@pytest.mark.timeout(600)
def test_dimuon_notebook_gives_the_same_histogram_locally_and_on_farside(
    gateway: GatewayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farside.examples import dimuon

    monkeypatch.setenv("FARSIDE_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("FARSIDE_TOKEN", gateway.user_token)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    data_dir = tmp_path / "data"
    _run(notebook, data_dir, tmp_path)

    paths = sorted(data_dir.iterdir())
    assert [p.name for p in paths] == ["dimuon-000.root", "dimuon-001.root"]
    # the notebook's numbers against a histogram made here from the files it wrote
    expected = dimuon.merge_histograms(dimuon.process_file(p) for p in paths)
    selected = int(expected.sum(flow=True))
    assert selected > 0.2 * N_FILES * EVENTS_PER_FILE
    code = [c for c in notebook.cells if c.cell_type == "code"]
    stdout = _outputs(code, "stdout")
    assert f"{N_FILES * EVENTS_PER_FILE:,} events in {N_FILES} files" in stdout
    assert f"local: {selected:,} selected events" in stdout
    assert "dask-awkward (2 partitions): the same histogram" in stdout
    assert f"farside: {selected:,} selected events, {N_FILES} jobs" in stdout
    assert "identical bin counts: True" in stdout
    assert f"cluster: {selected:,} selected events on 2 workers at ['local']" in stdout
    assert "cluster identical to local: True" in stdout
    assert f"offload: {selected:,} selected events" in stdout
    assert "offload identical to local: True" in stdout
    fitted = re.search(r"fit: mean ([0-9.]+) GeV", stdout)
    assert fitted, stdout
    assert abs(float(fitted[1]) - 91.19) < 1.0
    assert not _outputs(code, "stderr")
    assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", []))

    # the per-file histograms came from jobs that ran on the gateway's pilots
    client = gateway.client()
    try:
        jobs = [j for j in client.jobs(limit=50) if j.name == "histogram_file"]
    finally:
        client.close()
    assert len(jobs) == N_FILES
    assert {(j.state.value, j.site) for j in jobs} == {("finished", "local")}
