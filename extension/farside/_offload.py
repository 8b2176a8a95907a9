"""Graph offload: Dask's scheduler ``get`` protocol, run as jobs in the gateway's pool.

``dask.compute(x, scheduler=gw.offload)`` hands :func:`offload` the graph and the keys
wanted. The graph is cut into parts (:mod:`._offload_plan`), one job each; a job names the
jobs whose values it needs as ``after`` (it waits for them) and ``inputs`` (the pilot
fetches their results from the gateway and the worker puts them in place of the
:class:`InputRef` placeholders). Parts are submitted level by level, since a job can name
only jobs that already have ids. Only the jobs holding wanted keys are followed here, so
intermediate values move from pilot to gateway to pilot and never to the notebook; pilots
need nothing but the gateway's HTTPS. A lost pilot costs only the jobs it held (they are
retried like any job).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import uuid
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

from farside_protocol import FarsideError, JobFailed, NotFound
from farside_protocol.errors import RESULT_TOO_LARGE
from farside_protocol.models import JobSpec, SubmitRequest, SubmitResponse
from farside_protocol.payload import InputRef, encode_call
from farside_protocol.states import JobState

from ._dask_config import setting
from ._futures import FarsideFuture
from ._offload_plan import Part, plan, run_part, task_graph
from ._offload_progress import OffloadProgress
from ._outcome import decode
from ._task import Task, _register_by_value

if TYPE_CHECKING:
    from ._gateway import BaseGateway

__all__ = ["OPTIONS", "offload"]

#: what ``gw.offload`` and the ``farside.offload`` Dask config accept, as for ``@farside.task``
OPTIONS = frozenset(
    {
        "cores",
        "memory",
        "walltime",
        "gpus",
        "gpu_model",
        "arch",
        "env",
        "max_attempts",
        "priority",
        "sites",
        "group",
        "progress",
    }
)
SUBMIT_CHUNK = 1000
Key = Hashable


def offload(gateway: BaseGateway, dsk: Any, keys: Any, **options: Any) -> Any:
    """Compute ``keys`` of the Dask graph ``dsk`` as jobs; return their values, nested as
    ``keys`` is (Dask's scheduler ``get`` protocol)."""
    settings = {**(setting("offload") or {}), **options}
    unknown = sorted(set(settings) - OPTIONS)
    if unknown:
        raise TypeError(
            f"gw.offload got unknown option(s) {unknown}; it accepts {sorted(OPTIONS)} "
            "(the same as @farside.task)"
        )
    wanted = list(_flatten(keys))
    if not wanted:
        return _nested(keys, {})
    graph = task_graph(dsk)
    parts = plan(graph, wanted)
    group = str(settings.pop("group", None) or f"offload-{uuid.uuid4().hex[:8]}")
    told = OffloadProgress(dsk, parts, bool(settings.pop("progress", False)), group)
    template = Task(run_part, gateway=gateway, **settings)
    _ship_local_modules(graph)
    run = _Run(gateway, template, group, set(wanted), told)
    try:
        run.submit(graph, parts)
        values = run.gather()
    except BaseException:
        told.finish(errored=True)
        with contextlib.suppress(FarsideError):
            gateway.cancel(group=group)
        raise
    told.finish(errored=False)
    return _nested(keys, values)


def _flatten(keys: Any) -> Iterator[Key]:
    # keys nest in lists; a tuple is a key ("x", 0), not a container
    if isinstance(keys, list):
        for item in keys:
            yield from _flatten(item)
    else:
        yield keys


def _nested(keys: Any, values: dict[Key, Any]) -> Any:
    """``values`` shaped like ``keys``: lists become tuples, as Dask's schedulers return."""
    if isinstance(keys, list):
        return tuple(_nested(item, values) for item in keys)
    return values[keys]


def _ship_local_modules(graph: dict[Key, Any]) -> None:
    # functions from modules only this side has (a helpers.py next to the notebook) travel
    # by value, as they do for @farside.task
    seen: set[int] = set()
    for node in graph.values():
        func = getattr(node, "func", None)
        if callable(func) and id(func) not in seen:
            seen.add(id(func))
            _register_by_value(func)


class _Run:
    """One offload: its jobs, the futures of those holding wanted keys, and its errors."""

    def __init__(
        self,
        gateway: BaseGateway,
        template: Task[Any, Any],
        group: str,
        wanted: set[Key],
        told: OffloadProgress,
    ):
        self.gateway = gateway
        self.template = template
        self.group = group
        self.wanted = wanted
        self.told = told
        self.finals: list[FarsideFuture[Any]] = []

    def _spec(self, graph: dict[Key, Any], part: Part, job_ids: list[int]) -> JobSpec:
        parents = [job_ids[p] for p in part.parents]
        nodes = [graph[key] for key in part.keys]
        args = (nodes, part.exports, [InputRef(job_id) for job_id in parents])
        t = self.template
        return JobSpec(
            payload=encode_call(t.function_bytes, args, {}),
            name=part.name,
            group=self.group,
            resources=t.resources,
            max_attempts=t.max_attempts,
            priority=t.priority,
            sites=t.sites,
            env=t.env,
            after=parents,
            inputs=parents,
        )

    def submit(self, graph: dict[Key, Any], parts: list[Part]) -> None:
        """Submit every part, parents first, in bulk requests; follow the final ones."""
        gateway = self.gateway
        if gateway.closed:
            raise FarsideError("this Gateway is closed; create a new farside.Gateway()")
        gateway._listener.start()
        job_ids: list[int] = []
        # a request holds one level at most: its jobs may only name jobs submitted before
        for _, same_level in itertools.groupby(parts, key=lambda part: part.level):
            level = list(same_level)
            for start in range(0, len(level), SUBMIT_CHUNK):
                chunk = level[start : start + SUBMIT_CHUNK]
                specs = [self._spec(graph, part, job_ids) for part in chunk]
                answer = gateway._api.post("/jobs", SubmitRequest(jobs=specs), SubmitResponse)
                job_ids.extend(answer.job_ids)
                self.told.follow(gateway, answer.job_ids, chunk)
                finals = [
                    job_id
                    for job_id, part in zip(answer.job_ids, chunk, strict=True)
                    if self.wanted.intersection(part.exports)
                ]
                self.finals.extend(gateway._track(finals))

    def gather(self) -> dict[Key, Any]:
        """Wait for the final jobs; their wanted values by key, or the first error."""
        concurrent.futures.wait(self.finals, return_when=concurrent.futures.FIRST_EXCEPTION)
        for future in self.finals:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise self._cause(future.exception())
        values: dict[Key, Any] = {}
        for future in self.finals:
            values.update((k, v) for k, v in future.result().items() if k in self.wanted)
        return values

    def _cause(self, error: BaseException | None) -> BaseException:
        """The error to raise: a final job's own, or that of the job whose failure made the
        final one fail (its exception, as ``Future.result()`` would raise it)."""
        assert error is not None
        if not (isinstance(error, JobFailed) and error.error_class == "dependency"):
            return _speak_of_chunks(error)
        failed = self.gateway.jobs(group=self.group, state=JobState.FAILED)
        first = min(
            (job for job in failed if job.error_class not in (None, "dependency")),
            key=lambda job: job.id,
            default=None,
        )
        if first is None:
            return error
        try:
            data = self.gateway._api.get_bytes(f"/jobs/{first.id}/result")
        except NotFound:
            return _speak_of_chunks(
                JobFailed(f"job {first.id} failed: {first.error}", first.id, first.error_class)
            )
        cause = decode(data, first.id).error
        return cause if cause is not None else error


def _speak_of_chunks(error: BaseException) -> BaseException:
    """A part whose values were too large to pass on through the gateway: say what to
    change in the graph, since the user wrote no function that returns them."""
    if not (isinstance(error, JobFailed) and RESULT_TOO_LARGE in str(error)):
        return error
    return JobFailed(
        f"{error}. The job is a part of the offloaded Dask graph, and its chunks are too "
        "large to pass between jobs: use smaller chunks (chunks= when you make the "
        "collection, or .rechunk() / .repartition()), or reduce before the data leaves "
        "the job",
        error.job_id,
        error.error_class,
    )
