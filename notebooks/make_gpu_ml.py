"""Writes gpu_ml.ipynb (kept as code so the notebook's cells are reviewed as code).

The cell tagged ``parameters`` sets the training's size; tests/integration/
test_workflow_notebooks.py replaces it to run the notebook small, and
tests/gpu/run_on_device.sh runs the same training on a real GPU.
"""

from _write import write_notebook  # the script's own directory is on sys.path
from nbformat.v4 import new_code_cell, new_markdown_cell

CELLS = [
    new_markdown_cell(
        "# Training on a GPU site\n\n"
        "A small network (plain JAX: a multi-layer perceptron learning two interleaved "
        "spirals, `farside.examples.mlp`) trained in parallel for a few widths. Jobs that "
        "ask for `gpus=1` land on a site that has GPUs; the pilot gives each job a device "
        "of its own (`CUDA_VISIBLE_DEVICES`) and reports the GPU memory and utilisation the "
        "job used. Without a GPU site the same jobs train on CPUs.\n\n"
        "The pilots need JAX (`pip install 'farside[ml]'`; `jax[cuda12]` on GPU sites)."
    ),
    new_code_cell(
        "# parameters: the training (the test suite shrinks it)\n"
        "EPOCHS = 500\n"
        "WIDTHS = [32, 64, 128]",
        metadata={"tags": ["parameters"]},
    ),
    new_code_cell(
        "import farside\n"
        "from farside.examples.mlp import train\n"
        "\n"
        "gw = farside.Gateway()\n"
        "gpu_sites = [s.name for s in gw.sites() if s.slot.gpus > 0]\n"
        "GPUS = 1 if gpu_sites else 0\n"
        "print(f\"GPU sites: {gpu_sites or 'none, training on CPUs'}\")"
    ),
    new_markdown_cell("One job per width, all submitted at once; each trains on its own device."),
    new_code_cell(
        'fit = farside.task(train, memory="2 GiB", walltime="20 minutes", gpus=GPUS)\n'
        'runs = fit.map(kwargs=[{"hidden": w, "epochs": EPOCHS} for w in WIDTHS])\n'
        "results = runs.results(timeout=900)\n"
        "for width, r in zip(WIDTHS, results, strict=True):\n"
        "    print(\n"
        "        f\"width {width:4d}: accuracy {r['accuracy']:.3f} on {r['platform']}, \"\n"
        "        f\"CUDA_VISIBLE_DEVICES={r['cuda_visible_devices']}, {r['seconds']:.1f} s\"\n"
        "    )"
    ),
    new_markdown_cell(
        "What each job used, as its pilot measured it (GPU memory and utilisation only on "
        "a GPU site):"
    ),
    new_code_cell(
        "for job_id in runs.job_ids:\n"
        "    attempt = gw.job(job_id).attempt_list[-1]\n"
        "    print(job_id, attempt.site, attempt.max_rss, attempt.gpu_memory, "
        "attempt.gpu_utilization)"
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "for width, r in zip(WIDTHS, results, strict=True):\n"
        '    ax.semilogy(r["loss"], label=f"width {width}")\n'
        'ax.set_xlabel(f"epoch / {max(1, EPOCHS // 20)}")\n'
        'ax.set_ylabel("training loss")\n'
        "ax.legend();"
    ),
]

if __name__ == "__main__":
    write_notebook(CELLS, "gpu_ml.ipynb")
