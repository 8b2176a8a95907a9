"""Remote tracebacks show the user's source lines, even where the pilot cannot see the file."""

from __future__ import annotations

import doctest
import linecache
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from farside_protocol import source
from farside_protocol.payload import dump_function

# a process that stands for a pilot on another machine: it reads a pickled function from
# stdin, calls it and prints the traceback it raised
PILOT_SIDE = textwrap.dedent(
    """
    import pickle, sys, traceback
    fn = pickle.loads(sys.stdin.buffer.read())
    try:
        fn(1, 0)
    except Exception as exc:
        print("".join(traceback.format_exception(exc)))
    """
)


def _function_from_a_file_that_then_goes(tmp_path: Path) -> bytes:
    path = tmp_path / "analysis_cell.py"
    path.write_text(
        "import math\n"
        "\n"
        "def ratio(a, b):\n"
        "    scale = math.sqrt(4)\n"
        "    return scale * a / b  # the line the user must see\n"
    )
    namespace: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    data = dump_function(namespace["ratio"])
    path.unlink()  # the pilot's machine has no such file
    return data


def test_traceback_carries_the_source_line_of_a_file_the_pilot_lacks(tmp_path: Path) -> None:
    data = _function_from_a_file_that_then_goes(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", PILOT_SIDE], input=data, capture_output=True, check=True
    ).stdout.decode()
    assert f'File "{tmp_path / "analysis_cell.py"}", line 5, in ratio' in out
    assert "return scale * a / b  # the line the user must see" in out


def test_shipped_lines_fill_only_their_span(tmp_path: Path) -> None:
    name = str(tmp_path / "cell.py")
    source.remember_source(name, 3, ("c = 3\n", "d = 4\n"))
    source.remember_source(name, 1, ("a = 1\n",))
    assert linecache.getlines(name) == ["a = 1\n", "\n", "c = 3\n", "d = 4\n"]
    assert linecache.checkcache(name) is None
    assert linecache.getline(name, 4) == "d = 4\n"


def test_code_with_nested_functions_keeps_every_line(tmp_path: Path) -> None:
    def outer(x: int) -> int:
        def inner(y: int) -> int:
            return y + 1

        return inner(x)

    clone = pickle.loads(source.dumps(outer))
    assert clone(1) == 2
    assert clone.__code__.co_filename == __file__


def test_docstring_example() -> None:
    result = doctest.testmod(source)
    assert result.failed == 0
    assert result.attempted > 0
