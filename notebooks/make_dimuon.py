"""Writes dimuon.ipynb (kept as code so the notebook's cells are reviewed as code).

The cell tagged ``parameters`` sets the data size; tests/integration/test_dimuon_notebook.py
replaces it to run the notebook on small files.
"""

from _write import write_notebook  # the script's own directory is on sys.path
from nbformat.v4 import new_code_cell, new_markdown_cell

CELLS = [
    new_markdown_cell(
        "# The dimuon spectrum, four ways\n\n"
        "One analysis of NanoAOD-like files (synthetic: a Z → μμ peak on a falling "
        "background) run four ways, each giving the same histogram:\n\n"
        "1. **locally** with uproot and awkward (and dask-awkward on the local scheduler);\n"
        "2. **on farside**, one task per file, merging the per-file histograms here;\n"
        "3. on a **farside Dask cluster**, `gw.new_cluster(...)`: Dask workers on pilots;\n"
        "4. by **graph offload**, `dask.compute(..., scheduler=gw.offload)`: a Dask graph "
        "cut into farside jobs.\n\n"
        "Start the local platform first (`bash scripts/up.sh`), or set "
        "`FARSIDE_GATEWAY_URL` and `FARSIDE_TOKEN`. The pilots must be able to read "
        "`DATA_DIR`: true for the `local` site; on a batch site, put it on a shared file "
        "system. The analysis is `farside.examples.dimuon`, the data generator "
        "`farside.datasets` (see `docs/how-to/dimuon.md`)."
    ),
    new_code_cell(
        "# parameters: the data to generate (the test suite shrinks them)\n"
        "N_FILES = 4\n"
        "EVENTS_PER_FILE = 100_000\n"
        "SEED = 1\n"
        'DATA_DIR = "dimuon-data"',
        metadata={"tags": ["parameters"]},
    ),
    new_markdown_cell(
        "## The data\n\n"
        "A TTree `Events` per file with `nMuon`, `Muon_pt`, `Muon_eta`, `Muon_phi`, "
        "`Muon_mass` and `Muon_charge`, written a chunk at a time; the same seed gives the "
        "same events."
    ),
    new_code_cell(
        "import time\n"
        "from pathlib import Path\n\n"
        "from farside import datasets\n\n"
        "began = time.perf_counter()\n"
        "paths = datasets.make_dimuon_files("
        "Path(DATA_DIR).resolve(), N_FILES, EVENTS_PER_FILE, seed=SEED)\n"
        "elapsed = time.perf_counter() - began\n"
        'print(f"{N_FILES * EVENTS_PER_FILE:,} events in {len(paths)} files, {elapsed:.1f} s")'
    ),
    new_markdown_cell(
        "## 1. Locally: uproot and awkward\n\n"
        "The analysis step by step on one file: events with exactly two muons of opposite "
        "charge, their invariant mass (four-vector sums in float64), a histogram of 120 bins "
        "of 0.5 GeV from 60 to 120 GeV (masses outside land in the flow bins)."
    ),
    new_code_cell(
        "from farside.examples import dimuon\n\n"
        "muons = dimuon.read_muons(paths[0])\n"
        "pairs = dimuon.select_dimuons(muons)\n"
        "masses = dimuon.invariant_mass(pairs[:, 0], pairs[:, 1])\n"
        "first = [round(m, 2) for m in masses[:4].tolist()]\n"
        'print(f"{len(muons):,} events, {len(pairs):,} selected; masses {first} GeV")'
    ),
    new_markdown_cell(
        "Every file, a chunk at a time (`process_file` is what the farside jobs run), merged:"
    ),
    new_code_cell(
        "local = dimuon.merge_histograms(dimuon.process_file(p) for p in paths)\n"
        'print(f"local: {int(local.sum(flow=True)):,} selected events")'
    ),
    new_markdown_cell(
        "The same with dask-awkward on the local scheduler: one partition per file, "
        "`events_mass` on each. dask-awkward 2025.3's column optimisation fails on "
        "dask 2026 (`ValueError: Missing dependency`, dask/dask#11927); the branches are "
        "already limited to `Muon_*`, so turning it off reads nothing the analysis does not use."
    ),
    new_code_cell(
        "import dask\n"
        "import dask_awkward as dak\n"
        "import uproot\n\n"
        'events = uproot.dask({str(p): "Events" for p in paths}, filter_name="Muon_*")\n'
        "dimuon_masses = dak.map_partitions(dimuon.events_mass, events)\n"
        'with dask.config.set({"awkward.optimization.enabled": False}):\n'
        '    (computed,) = dask.compute(dimuon_masses, scheduler="threads")\n'
        "local_dask = dimuon.mass_histogram(computed)\n"
        "assert local_dask == local\n"
        'print(f"dask-awkward ({events.npartitions} partitions): the same histogram")'
    ),
    new_markdown_cell(
        "## 2. On farside: one task per file\n\n"
        "Each job reads one file and returns its histogram (a few kB); the notebook merges "
        "them. `farside.examples.dimuon` is imported by name on the pilot, so the pilots' "
        "Python needs the `analysis` extra."
    ),
    new_code_cell(
        "import farside\n\n"
        "gw = farside.Gateway()\n\n\n"
        '@farside.task(cores=1, memory="1 GiB", walltime="10m")\n'
        "def histogram_file(path):\n"
        "    return dimuon.process_file(path)\n\n\n"
        "began = time.perf_counter()\n"
        "results = histogram_file.map([str(p) for p in paths])\n"
        "remote = dimuon.merge_histograms(results.results(timeout=600))\n"
        "elapsed = time.perf_counter() - began\n"
        "print(\n"
        '    f"farside: {int(remote.sum(flow=True)):,} selected events, "\n'
        '    f"{len(results)} jobs ({results.group}), {elapsed:.1f} s"\n'
        ")"
    ),
    new_code_cell(
        "same_counts = (remote.values(flow=True) == local.values(flow=True)).all()\n"
        'assert same_counts, "farside and local bin counts differ"\n'
        'assert remote == local, "farside and local histograms differ (axes or counts)"\n'
        'print("identical bin counts:", bool(same_counts))'
    ),
    new_markdown_cell(
        "## The Z peak\n\n"
        "The fullest bin, and a Gaussian fitted to the counts within 3 GeV of it (a parabola "
        "through their logarithm): it locates the peak; it is not a line-shape fit."
    ),
    new_code_cell(
        "mean, sigma = dimuon.fit_peak(remote)\n"
        "print(\n"
        '    f"fullest bin at {dimuon.peak_position(remote):.2f} GeV; "\n'
        '    f"fit: mean {mean:.2f} GeV, sigma {sigma:.2f} GeV "\n'
        '    f"(Z mass {datasets.Z_MASS} GeV)"\n'
        ")\n"
        "assert abs(mean - datasets.Z_MASS) < 1.0"
    ),
    new_code_cell(
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n\n"
        "edges = remote.axes[0].edges\n"
        "fig, ax = plt.subplots(figsize=(7, 4))\n"
        'ax.stairs(local.values(), edges, label="local (uproot + awkward)", linewidth=2)\n'
        'ax.stairs(remote.values(), edges, label=f"farside ({len(paths)} jobs)", '
        'linestyle="--")\n'
        'ax.axvline(datasets.Z_MASS, color="grey", linewidth=0.8, label="Z mass")\n'
        'ax.set(xlabel="dimuon mass [GeV]", ylabel="events / 0.5 GeV", yscale="log")\n'
        "ax.legend()\n"
        "plt.show()"
    ),
    new_markdown_cell(
        "## 3. On a farside Dask cluster\n\n"
        "The same dask-awkward graph, `dimuon_masses`, computed by a Dask cluster whose "
        "workers are farside pilots: the gateway runs its scheduler, each worker is a lease "
        "in the pool (brokerage and fair share apply), and this notebook talks to the "
        "scheduler directly over TLS. The cluster is a `distributed.deploy.Cluster`: "
        "`get_client`, `scale`, `adapt` and the widget below work as for any Dask cluster."
    ),
    new_code_cell(
        'cluster = gw.new_cluster(workers=2, cores=1, memory="1 GiB")\n'
        "client = cluster.get_client()\n"
        "client.wait_for_workers(2, timeout=300)\n"
        "cluster"
    ),
    new_code_cell(
        "began = time.perf_counter()\n"
        "# the client is now the default scheduler. With distributed, the graph is optimised\n"
        "# on the scheduler, where the notebook's dask.config does not reach: skip the\n"
        "# optimisation there as above (the branches are limited to Muon_* already)\n"
        "(on_cluster,) = dask.compute(dimuon_masses, optimize_graph=False)\n"
        "clustered = dimuon.mass_histogram(on_cluster)\n"
        "sites = sorted({w.site for w in cluster.refresh().workers})\n"
        "print(\n"
        '    f"cluster: {int(clustered.sum(flow=True)):,} selected events on "\n'
        "    f\"{len(client.scheduler_info()['workers'])} workers at {sites}, \"\n"
        '    f"{time.perf_counter() - began:.1f} s"\n'
        ")\n"
        'assert clustered == local, "cluster and local histograms differ"\n'
        'print("cluster identical to local:", clustered == local)\n'
        "client.close()\n"
        "cluster.close()  # its workers' pilots take other work again"
    ),
    new_markdown_cell(
        "## 4. Graph offload\n\n"
        "The same analysis as a Dask graph — one histogram per file, then their sum — "
        "computed with `scheduler=gw.offload`: the gateway runs the graph as farside jobs "
        "with dependencies, per-file histograms move between jobs through the gateway, and "
        "only the merged histogram comes back here. Pilots need to reach nothing but the "
        "gateway."
    ),
    new_code_cell(
        "import dask\n\n"
        "per_file = [dask.delayed(dimuon.process_file)(str(p)) for p in paths]\n"
        "total = dask.delayed(dimuon.merge_histograms)(per_file)\n"
        "began = time.perf_counter()\n"
        "(offloaded,) = dask.compute(total, scheduler=gw.offload)\n"
        "print(\n"
        '    f"offload: {int(offloaded.sum(flow=True)):,} selected events, "\n'
        '    f"{time.perf_counter() - began:.1f} s"\n'
        ")\n"
        'assert offloaded == local, "offloaded and local histograms differ"\n'
        'print("offload identical to local:", offloaded == local)'
    ),
]

if __name__ == "__main__":
    write_notebook(CELLS, "dimuon.ipynb")
