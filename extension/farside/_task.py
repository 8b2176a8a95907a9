"""``@farside.task``: a function that runs where the gateway sends it.

The function is pickled once per task (cloudpickle) and each call adds only its arguments.
Functions and closures defined in a notebook (``__main__``) travel by value. So do
functions from modules that exist only on your side — a ``helpers.py`` next to the
notebook, a package you have not installed — whether the task's function lives there or
uses them (through globals or a closure): any module that is neither in the standard
library nor an installed distribution is registered with
``cloudpickle.register_pickle_by_value`` and ships with the job. Modules of installed
packages (numpy, awkward, ...) are imported by name on the worker, so they must be
installed there; if one is missing, the job fails with the pilot's clear
``ModuleNotFoundError``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import sys
import sysconfig
import time
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

import cloudpickle

from farside_protocol.models import JobSpec, Resources
from farside_protocol.payload import dump_function, encode_call

from ._futures import FarsideFuture, MapResult
from ._gateway import SUBMIT_CHUNK, BaseGateway, get_gateway
from ._profile import task_defaults
from ._progress import progress as show_progress

__all__ = ["Task", "task"]

P = ParamSpec("P")
R = TypeVar("R")


@functools.cache
def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(Path(paths[k]).resolve() for k in keys if k in paths)


#: seconds the list of installed distributions is reused: building it reads every package's
#: metadata (~0.5 s with a data-science stack), and a `pip install` in the notebook is
#: seen a minute later at most
DISTRIBUTIONS_TTL = 60.0
_distributions: tuple[float, Mapping[str, list[str]]] | None = None


def _installed_top_levels() -> Mapping[str, list[str]]:
    global _distributions
    now = time.monotonic()
    if _distributions is None or now - _distributions[0] > DISTRIBUTIONS_TTL:
        _distributions = (now, importlib.metadata.packages_distributions())
    return _distributions[1]


def ships_by_value(module: types.ModuleType) -> bool:
    """Whether ``module`` exists only on this side (not stdlib, not an installed package).

    >>> import json, farside
    >>> ships_by_value(json), ships_by_value(farside)
    (False, False)
    """
    name = module.__name__
    top = name.partition(".")[0]
    if name == "__main__" or top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return False
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    if any(path.is_relative_to(root) for root in _installed_roots()):
        return False
    return top not in _installed_top_levels()


def _modules_used_by(fn: Callable[..., Any]) -> set[types.ModuleType]:
    """Modules ``fn`` reaches: its own, and those of globals and closure cells it uses."""
    found: set[types.ModuleType] = set()
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        if isinstance(obj, types.ModuleType):
            found.add(obj)
            return
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is not None:
            found.add(module)
        code = getattr(obj, "__code__", None)
        if code is None:
            return
        glob = getattr(obj, "__globals__", {})
        for name in _names(code):
            if name in glob:
                visit(glob[name], depth + 1)
        for cell in getattr(obj, "__closure__", None) or ():
            with contextlib.suppress(ValueError):  # an empty cell has no contents
                visit(cell.cell_contents, depth + 1)

    visit(fn, 0)
    return found


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _register_by_value(fn: Callable[..., Any]) -> None:
    for module in _modules_used_by(fn):
        if ships_by_value(module):
            top = sys.modules.get(module.__name__.partition(".")[0], module)
            cloudpickle.register_pickle_by_value(top)


class Task(Generic[P, R]):
    """A function with the resources it needs; call ``.submit`` or ``.map`` to run it remotely.

    Calling the task itself runs the plain function here.

    >>> @task(cores=1, memory="1 GiB", walltime="10m")
    ... def square(x):
    ...     return x * x
    >>> square(3)
    9
    >>> square.resources.memory
    1073741824
    >>> square.submit(3).result()       # doctest: +SKIP
    9
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        cores: int = 1,
        memory: int | str | None = None,
        walltime: int | str | None = None,
        gpus: int = 0,
        gpu_model: str | None = None,
        arch: str | None = None,
        env: str | None = None,
        max_attempts: int = 1,
        priority: int = 0,
        name: str | None = None,
        sites: Iterable[str] | None = None,
        after: Iterable[FarsideFuture[Any] | int] | None = None,
        gateway: BaseGateway | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        # memory and walltime left out are the gateway's to choose (1 GiB, 1 h), and the
        # scouts of a large map may correct them; given ones are kept as they are
        given = {"memory": memory, "walltime": walltime, "gpu_model": gpu_model, "arch": arch}
        self.resources = Resources(
            cores=cores, gpus=gpus, **{k: v for k, v in given.items() if v is not None}
        )
        self.env = env
        self.max_attempts = max_attempts
        self.priority = priority
        self.name = (name or getattr(fn, "__qualname__", None) or repr(fn))[:200]
        self.sites = list(sites or [])
        # jobs (futures or ids) that must finish first; the gateway holds the new job in
        # ``pending`` until they have, and fails it if one of them fails
        self.after = [a.job_id if isinstance(a, FarsideFuture) else int(a) for a in after or []]
        self._gateway = gateway
        self._function_bytes: bytes | None = None
        # fail at decoration, not at submission, when an option is impossible
        self._spec(b"", None)

    def __repr__(self) -> str:
        r = self.resources
        return f"<farside.Task {self.name} cores={r.cores} memory={r.memory} walltime={r.walltime}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # a task referenced from another task's function travels without its connection
        return {**self.__dict__, "_gateway": None, "_function_bytes": None}

    def options(self, **changes: Any) -> Task[P, R]:
        """A copy with some options changed, e.g. ``square.options(memory="4 GiB")``."""
        current: dict[str, Any] = {
            **self.resources.model_dump(exclude_unset=True),
            "env": self.env,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "name": self.name,
            "sites": self.sites,
            "after": self.after,
            "gateway": self._gateway,
        }
        return Task(self.fn, **{**current, **changes})

    @property
    def gateway(self) -> BaseGateway:
        """The gateway given to the task, else the default one (created on first use)."""
        if self._gateway is not None:
            return self._gateway
        return get_gateway()

    @property
    def function_bytes(self) -> bytes:
        """The pickled function, made once per task."""
        if self._function_bytes is None:
            _register_by_value(self.fn)
            self._function_bytes = dump_function(self.fn)
        return self._function_bytes

    def _spec(self, payload: bytes, group: str | None) -> JobSpec:
        return JobSpec(
            payload=payload,
            name=self.name,
            group=group,
            resources=self.resources,
            max_attempts=self.max_attempts,
            priority=self.priority,
            sites=self.sites,
            after=self.after,
            env=self.env,
        )

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> FarsideFuture[R]:
        """Run one call remotely; returns its future."""
        payload = encode_call(self.function_bytes, args, kwargs)
        (future,) = self.gateway.submit_jobs([self._spec(payload, None)])
        return future

    def map(
        self,
        *iterables: Iterable[Any],
        kwargs: Iterable[Mapping[str, Any]] | None = None,
        chunksize: int = SUBMIT_CHUNK,
        group: str | None = None,
        progress: bool = False,
    ) -> MapResult[R]:
        """Run the function on each element (zipped across ``iterables``), in bulk.

        ``kwargs``: a keyword-argument dict per call (``evaluate.map(kwargs=points)``), alone
        or zipped with ``iterables``. All calls are submitted now, ``chunksize`` (at most
        1,000 advised) per request, and share one ``group``. Iterating the result yields
        results in input order. ``progress=True`` shows a tqdm bar (a widget in a notebook)
        that advances as jobs end.
        """
        gateway = self.gateway
        group = group or f"{self.name[:180]}-{uuid.uuid4().hex[:8]}"
        fn_bytes = self.function_bytes
        specs = [
            self._spec(encode_call(fn_bytes, args, dict(kw)), group)
            for args, kw in _calls(iterables, kwargs)
        ]
        futures = gateway.submit_jobs(specs, chunksize) if specs else []
        result = MapResult(gateway, futures, group)
        if progress:
            show_progress(result)
        return result


def _calls(
    iterables: tuple[Iterable[Any], ...], kwargs: Iterable[Mapping[str, Any]] | None
) -> Iterable[tuple[tuple[Any, ...], Mapping[str, Any]]]:
    """The (args, kwargs) of each call of a map.

    >>> list(_calls(([1, 2], "ab"), None))
    [((1, 'a'), {}), ((2, 'b'), {})]
    >>> list(_calls((), [{"x": 1}, {"x": 2}]))
    [((), {'x': 1}), ((), {'x': 2})]
    """
    if kwargs is None:
        return ((args, {}) for args in zip(*iterables, strict=False))
    if not iterables:
        return (((), kw) for kw in kwargs)
    return zip(zip(*iterables, strict=False), kwargs, strict=False)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    cores: int = 1,
    memory: int | str | None = None,
    walltime: int | str | None = None,
    gpus: int = 0,
    gpu_model: str | None = None,
    arch: str | None = None,
    env: str | None = None,
    max_attempts: int = 1,
    priority: int = 0,
    name: str | None = None,
    sites: Iterable[str] | None = None,
    after: Iterable[FarsideFuture[Any] | int] | None = None,
    gateway: BaseGateway | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function submittable: ``@farside.task`` or ``@farside.task(cores=4, ...)``.

    Options: ``cores``, ``memory`` ("2 GiB"; default 1 GiB, which the scouts of a large map
    may correct), ``walltime`` ("10m"; default 1 h, likewise), ``gpus``, ``gpu_model``
    ("A100"), ``arch`` ("aarch64"), ``env`` (an environment a site offers), ``max_attempts``
    (attempts a raising function may use), ``priority``, ``name``, ``sites`` (allowed sites
    in order of preference; empty: any), ``after`` (futures or job ids that must finish
    first: ``step2.options(after=[fut]).submit(x)``) and ``gateway`` (default: the default
    gateway).

    >>> @task
    ... def hello(who):
    ...     return f"hello {who}"
    >>> hello("world")
    'hello world'
    """
    # in a JupyterHub server, the profile the user chose (e.g. ML+GPU) sets env and gpus
    options = {**task_defaults(), **options}
    if fn is not None:
        return Task(fn, **options)

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, **options)

    return decorate
