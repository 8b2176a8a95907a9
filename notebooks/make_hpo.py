"""Writes hpo.ipynb (kept as code so the notebook's cells are reviewed as code).

The cell tagged ``parameters`` sets the size of the search; tests/integration/
test_workflow_notebooks.py replaces it to run the notebook small.
"""

from _write import write_notebook  # the script's own directory is on sys.path
from nbformat.v4 import new_code_cell, new_markdown_cell

CELLS = [
    new_markdown_cell(
        "# Hyper-parameter optimisation as a farside workflow\n\n"
        "Bayesian optimisation (Optuna's TPE sampler) of a model's hyper-parameters: each "
        "iteration asks the sampler for a batch of points, evaluates them in parallel as "
        "farside jobs, and tells it the scores. The loop itself is a **workflow**: it runs "
        "on a pilot, not in this kernel, so the search goes on if the notebook closes, and "
        "every evaluation is journalled: if the loop's pilot dies, or you pause and resume "
        "the run, no finished point is evaluated again.\n\n"
        "Start the local platform first (`bash scripts/up.sh`), or set "
        "`FARSIDE_GATEWAY_URL` and `FARSIDE_TOKEN`. The loop runs on a pilot, so Optuna "
        "must be installed where the pilots run (`pip install 'farside[ml]'`)."
    ),
    new_code_cell(
        "# parameters: the size of the search (the test suite shrinks it)\n"
        "N_ITER = 6\n"
        "BATCH = 8\n"
        "SEED = 7",
        metadata={"tags": ["parameters"]},
    ),
    new_markdown_cell(
        "## The model\n\n"
        "Ridge regression on polynomial features of a noisy curve; the hyper-parameters are "
        "the polynomial's degree and the regularisation strength. One evaluation trains on "
        "150 points and returns the mean squared error on 50 others: it stands in for a "
        "network's training."
    ),
    new_code_cell(
        "import numpy as np\n"
        "\n"
        "import farside\n"
        "\n"
        "gw = farside.Gateway()\n"
        "\n"
        "\n"
        "def make_data(seed=0, n=200):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    x = rng.uniform(-1, 1, n)\n"
        "    return x, np.sin(3 * x) + 0.3 * x**2 + rng.normal(0, 0.1, n)\n"
        "\n"
        "\n"
        '@farside.task(memory="500 MB", walltime="5 minutes")\n'
        "def evaluate(degree, log_alpha):\n"
        '    """Validation error of the model with these hyper-parameters."""\n'
        "    x, y = make_data()\n"
        "    X = np.vander(x, degree + 1)\n"
        "    train, valid = slice(0, 150), slice(150, None)\n"
        "    A = X[train].T @ X[train] + 10.0**log_alpha * np.eye(degree + 1)\n"
        "    w = np.linalg.solve(A, X[train].T @ y[train])\n"
        "    return float(np.mean((X[valid] @ w - y[valid]) ** 2))\n"
        "\n"
        "\n"
        "evaluate(3, -2.0)  # here, once: about 0.02",
    ),
    new_markdown_cell(
        "## The loop\n\n"
        "A seeded sampler asks the same questions when the loop runs again, so the journal "
        "gives back the evaluations it made before. `farside.report` publishes the "
        "progress that `run.progress()` and the widget show."
    ),
    new_code_cell(
        '@farside.workflow(max_walltime="1 hour")\n'
        "def optimise(n_iter, batch, seed):\n"
        "    import optuna\n"
        "\n"
        "    optuna.logging.set_verbosity(optuna.logging.WARNING)\n"
        "    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=batch)\n"
        "    study = optuna.create_study(sampler=sampler)\n"
        "    for i in range(n_iter):\n"
        "        trials = [study.ask() for _ in range(batch)]\n"
        "        points = [\n"
        "            {\n"
        '                "degree": t.suggest_int("degree", 1, 15),\n'
        '                "log_alpha": t.suggest_float("log_alpha", -8.0, 1.0),\n'
        "            }\n"
        "            for t in trials\n"
        "        ]\n"
        "        for trial, score in zip(trials, evaluate.map(kwargs=points), strict=True):\n"
        "            study.tell(trial, score)\n"
        "        farside.report(\n"
        "            iteration=i + 1,\n"
        "            evaluated=len(study.trials),\n"
        "            best=study.best_value,\n"
        "            best_params=study.best_params,\n"
        "        )\n"
        "    return {\n"
        '        "best": study.best_value,\n'
        '        "params": study.best_params,\n'
        '        "trials": len(study.trials),\n'
        "    }\n"
        "\n"
        "\n"
        "run = optimise.submit(N_ITER, BATCH, SEED)  # returns at once\n"
        "run.monitor()  # live: state, evaluations by state, the last report",
    ),
    new_markdown_cell(
        "The run lives in the gateway: from another kernel, `farside.Gateway()."
        'workflow("optimise")` finds it; `farside workflow optimise` shows it in a '
        "terminal; `run.pause()`, `run.resume()` and `run.kill()` steer it."
    ),
    new_code_cell(
        "best = run.result(timeout=900)\nbest",
    ),
    new_code_cell(
        "info = run.progress()\n"
        'print(info.state.value, info.children, "report:", info.report["iteration"])\n'
        "# the best point, evaluated here again: the same score\n"
        'assert abs(evaluate(**best["params"]) - best["best"]) < 1e-12',
    ),
]

if __name__ == "__main__":
    write_notebook(CELLS, "hpo.ipynb")
