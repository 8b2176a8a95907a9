"""The ``>>>`` examples in the client's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["farside", "farside._config", "farside._outcome", "farside._task", "farside._cli_format"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
