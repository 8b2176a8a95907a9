"""Writes quickstart.ipynb (kept as code so the notebook's cells are reviewed as code)."""

from _write import write_notebook  # the script's own directory is on sys.path
from nbformat.v4 import new_code_cell, new_markdown_cell

CELLS = [
    new_markdown_cell(
        "# farside quickstart\n\nRun functions from this notebook on far-away cores. Start the "
        "local platform first (`bash scripts/up.sh`), or set `FARSIDE_GATEWAY_URL` and "
        "`FARSIDE_TOKEN`."
    ),
    new_code_cell("import farside\n\ngw = farside.Gateway()\ngw.whoami()"),
    new_code_cell(
        '@farside.task(cores=1, memory="1 GiB", walltime="10m")\n'
        "def square(x):\n"
        '    print("squaring", x)\n'
        "    return x * x\n\n"
        "fut = square.submit(3)\n"
        "fut.result(timeout=60)"
    ),
    new_code_cell("list(square.map(range(10)))"),
    new_code_cell("for line in gw.logs(fut.job_id, follow=True):\n    print(line)"),
    new_markdown_cell("Closures over notebook state travel with the job:"),
    new_code_cell(
        "threshold = 25.0\n\n"
        "def select(pts):\n"
        "    return [pt for pt in pts if pt > threshold]\n\n"
        "gw.submit(select, [10.0, 30.0, 50.0]).result(timeout=60)"
    ),
    new_markdown_cell("A job that waits for another, and the job list:"),
    new_code_cell(
        "step2 = square.options(after=[fut]).submit(4)\n"
        "print(step2.result(timeout=60))\n"
        "[(j.id, j.state.value, j.site, j.attempts) for j in gw.jobs(limit=3)]"
    ),
]

if __name__ == "__main__":
    write_notebook(CELLS, "quickstart.ipynb")
