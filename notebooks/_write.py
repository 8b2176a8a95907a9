"""Shared by the ``make_*.py`` scripts: write a notebook of cells next to them."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(cells: list[nbformat.NotebookNode], name: str) -> None:
    path = Path(__file__).with_name(name)
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC}), path)
    print(f"wrote {path}")
