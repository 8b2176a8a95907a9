"""Writes active_learning.ipynb (kept as code so the notebook's cells are reviewed as code).

The cell tagged ``parameters`` sets the scan's size; tests/integration/
test_workflow_notebooks.py replaces it to run the notebook small.
"""

from _write import write_notebook  # the script's own directory is on sys.path
from nbformat.v4 import new_code_cell, new_markdown_cell

CELLS = [
    new_markdown_cell(
        "# Active learning of an exclusion contour\n\n"
        "A dark-sector search in miniature: a new particle of mass *m* and coupling *g* "
        "would add a bump to a falling background. For each (*m*, *g*) a HistFactory model "
        "(pyhf) gives the CLs of the signal hypothesis; points with CLs < 0.05 are excluded. "
        "A full scan evaluates every point of the grid. Active learning evaluates a few, "
        "fits a surrogate of log CLs, and asks next for the points the surrogate puts "
        "nearest the contour, until the contour is known.\n\n"
        "The loop is a farside **workflow**: it runs on a pilot and journals every "
        "evaluation, so it survives the notebook closing and its pilot dying. pyhf and "
        "scipy must be installed where the pilots run (`pip install 'farside[ml]'`)."
    ),
    new_code_cell(
        "# parameters: the scan (the test suite shrinks it)\n"
        "GRID = 12  # points per axis of the candidate grid\n"
        "N_ITER = 4  # rounds of active learning after the first batch\n"
        "BATCH = 6  # evaluations per round, in parallel\n"
        "SEED = 3",
        metadata={"tags": ["parameters"]},
    ),
    new_markdown_cell(
        "## The statistical model\n\n"
        "Five bins from 100 to 1000 GeV, a background with 10% uncorrelated uncertainties, "
        "and a Gaussian signal whose yield falls with mass and grows with *g*². The data are "
        "the background alone: the contour is the expected limit."
    ),
    new_code_cell(
        "import warnings\n"
        "\n"
        "import numpy as np\n"
        "\n"
        "import farside\n"
        "\n"
        "gw = farside.Gateway()\n"
        "BKG = [120.0, 90.0, 70.0, 50.0, 35.0]\n"
        "EDGES = np.linspace(100.0, 1000.0, 6)\n"
        "\n"
        "\n"
        '@farside.task(memory="1 GiB", walltime="5 minutes")\n'
        "def cls(mass, log_g):\n"
        '    """CLs of the signal (mass, 10**log_g) against the background-only data."""\n'
        "    import pyhf\n"
        "\n"
        '    warnings.simplefilter("ignore", DeprecationWarning)  # pyhf on jsonschema 4.18+\n'
        "    centres = 0.5 * (EDGES[:-1] + EDGES[1:])\n"
        "    shape = np.exp(-0.5 * ((centres - mass) / 120.0) ** 2)\n"
        "    signal = (10.0**log_g) ** 2 * 3000.0 * np.exp(-mass / 400.0) * shape / shape.sum()\n"
        "    model = pyhf.simplemodels.uncorrelated_background(\n"
        "        signal=list(signal + 1e-6), bkg=BKG, bkg_uncertainty=[0.1 * b for b in BKG]\n"
        "    )\n"
        "    data = BKG + model.config.auxdata\n"
        '    return float(pyhf.infer.hypotest(1.0, data, model, test_stat="qtilde"))\n'
        "\n"
        "\n"
        "masses = np.linspace(100.0, 1000.0, GRID)\n"
        "log_gs = np.linspace(-2.0, 0.0, GRID)\n"
        "candidates = np.array([(m, lg) for m in masses for lg in log_gs])\n"
        "len(candidates)",
    ),
    new_markdown_cell(
        "## The surrogate and the choice of the next points\n\n"
        "A thin-plate-spline RBF interpolation of log CLs (scipy) over the points seen so "
        "far; the next batch is the unseen candidates predicted nearest log 0.05, kept "
        "apart from each other so one round does not spend itself on one spot."
    ),
    new_code_cell(
        "def predict(seen_x, seen_y, candidates):\n"
        "    from scipy.interpolate import RBFInterpolator\n"
        "\n"
        "    lo, hi = candidates.min(0), candidates.max(0)\n"
        "    fit = RBFInterpolator(\n"
        "        (seen_x - lo) / (hi - lo),\n"
        "        np.log(np.clip(seen_y, 1e-6, 1)),\n"
        '        kernel="thin_plate_spline",\n'
        "        smoothing=1e-3,\n"
        "    )\n"
        "    return fit((candidates - lo) / (hi - lo))\n"
        "\n"
        "\n"
        "def next_points(predicted, candidates, seen, batch, spread=0.12):\n"
        "    lo, hi = candidates.min(0), candidates.max(0)\n"
        "    unit = (candidates - lo) / (hi - lo)\n"
        "    chosen = []\n"
        '    for i in np.argsort(np.abs(predicted - np.log(0.05)), kind="stable"):\n'
        "        far = all(np.linalg.norm(unit[i] - unit[j]) > spread for j in chosen)\n"
        "        if int(i) not in seen and far:\n"
        "            chosen.append(int(i))\n"
        "        if len(chosen) == batch:\n"
        "            break\n"
        "    return chosen",
    ),
    new_markdown_cell("## The loop, as a workflow"),
    new_code_cell(
        '@farside.workflow(max_walltime="2 hours")\n'
        "def learn_contour(candidates, n_iter, batch, seed):\n"
        "    rng = np.random.default_rng(seed)  # seeded: a rerun asks the same points\n"
        "    seen = [int(i) for i in rng.choice(len(candidates), batch, replace=False)]\n"
        "    values = []\n"
        "    for round_ in range(n_iter + 1):\n"
        "        new = seen[len(values) :]\n"
        "        values += cls.map(*candidates[new].T)  # the new points, in parallel\n"
        "        predicted = predict(candidates[seen], np.array(values), candidates)\n"
        "        excluded = int(np.sum(predicted < np.log(0.05)))\n"
        "        farside.report(round=round_, evaluated=len(seen), excluded_predicted=excluded)\n"
        "        if round_ < n_iter:\n"
        "            seen += next_points(predicted, candidates, set(seen), batch)\n"
        '    return {"seen": seen, "cls": values, "predicted": predicted.tolist()}\n'
        "\n"
        "\n"
        "run = learn_contour.submit(candidates, N_ITER, BATCH, SEED)\n"
        "run.monitor()",
    ),
    new_code_cell(
        "found = run.result(timeout=900)\n"
        'predicted = np.array(found["predicted"])\n'
        "print(f\"evaluated {len(found['seen'])} of {len(candidates)} grid points\")",
    ),
    new_markdown_cell(
        "## Check: the full scan\n\n"
        "What active learning saved us, done here once to compare: every grid point's CLs."
    ),
    new_code_cell(
        "truth = np.array([cls(m, lg) for m, lg in candidates])\n"
        "agree = np.mean((predicted < np.log(0.05)) == (truth < 0.05))\n"
        'print(f"the surrogate classifies {agree:.0%} of the grid as the full scan does")\n'
        'assert np.allclose(np.array(found["cls"]), truth[found["seen"]])',
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "\n"
        "fig, ax = plt.subplots(figsize=(5, 4))\n"
        "shape = (len(masses), len(log_gs))\n"
        'ax.contour(masses, log_gs, truth.reshape(shape).T, levels=[0.05], colors="k")\n'
        'dashed = {"levels": [0.05], "colors": "C1", "linestyles": "--"}\n'
        "ax.contour(masses, log_gs, np.exp(predicted).reshape(shape).T, **dashed)\n"
        'ax.scatter(*candidates[found["seen"]].T, s=12, c="C0", label="evaluated")\n'
        'ax.set_xlabel("mass [GeV]")\n'
        'ax.set_ylabel("log10 g")\n'
        'ax.set_title("CLs = 0.05: full scan (black), surrogate (orange)")\n'
        'ax.legend(loc="lower left");',
    ),
]

if __name__ == "__main__":
    write_notebook(CELLS, "active_learning.ipynb")
