"""``@farside.workflow``: a loop whose next step depends on the last results, run in the pool.

The decorated function (the *body*) runs as a job on a pilot, not in the kernel, so a run
goes on for hours with the notebook closed. Inside it, tasks are submitted and mapped as
usual: they become the run's children, submitted with a token the gateway gave that
attempt of the body. Every child is journalled under its place in the body and its call
(:mod:`._journal`): when the body runs again — its pilot was lost, or the run was paused
and resumed — it makes the same calls, gets the same jobs back, and nothing finished is
evaluated twice.

>>> @workflow(max_walltime="1d")
... def optimise(n_iter=10):
...     ...
>>> run = optimise.submit(n_iter=3)        # doctest: +SKIP
>>> run.progress().report                  # doctest: +SKIP
{'iteration': 1, 'best': 0.42}
>>> gw.workflow("optimise").result()       # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from farside_protocol import FarsideError, WorkflowCancelled
from farside_protocol.payload import encode_call
from farside_protocol.workflows import (
    WorkflowInfo,
    WorkflowList,
    WorkflowReport,
    WorkflowSpec,
    WorkflowStarted,
    WorkflowState,
)

from ._gateway import BaseGateway, get_gateway
from ._task import Task

if TYPE_CHECKING:
    from .widgets import WorkflowMonitor

__all__ = ["Workflow", "WorkflowRun", "report", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")

#: seconds between looks at a paused run while waiting for its result
PAUSED_POLL = 2.0


class Workflow(Generic[P, R]):
    """A function whose body runs in the pool and submits tasks; ``.submit`` starts a run.

    Calling the workflow itself runs the plain function here (its tasks are submitted from
    the kernel, without a journal).
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        max_walltime: int | str = "1d",
        cores: int = 1,
        memory: int | str | None = None,
        name: str | None = None,
        sites: Iterable[str] | None = None,
        env: str | None = None,
        priority: int = 0,
        gateway: BaseGateway | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        # the body's job: a task whose walltime is the run's longest life without a pause
        self._body: Task[P, R] = Task(
            fn,
            cores=cores,
            memory=memory,
            walltime=max_walltime,
            # the function's own name (not its qualified name): gw.workflow("optimise")
            name=name or getattr(fn, "__name__", None),
            sites=sites,
            env=env,
            priority=priority,
            gateway=gateway,
        )

    @property
    def name(self) -> str:
        return self._body.name

    def __repr__(self) -> str:
        return f"<farside.Workflow {self.name} max_walltime={self._body.resources.walltime}s>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> WorkflowRun[R]:
        """Start a run in the pool; returns its handle (``gw.workflow(id)`` finds it again)."""
        body = self._body
        spec = WorkflowSpec(
            name=body.name,
            payload=encode_call(body.function_bytes, args, kwargs),
            resources=body.resources,
            sites=body.sites,
            env=body.env,
            priority=body.priority,
        )
        gateway = body.gateway
        started = gateway._api.post("/workflows", spec, WorkflowStarted)
        return WorkflowRun(gateway, started.id, body.name)


class WorkflowRun(Generic[R]):
    """One run of a workflow: watch it, wait for it, pause, resume, kill or retry it."""

    def __init__(self, gateway: BaseGateway, workflow_id: int, name: str) -> None:
        self.gateway = gateway
        self.id = workflow_id
        self.name = name

    def __repr__(self) -> str:
        return f"<farside.WorkflowRun {self.id} {self.name}>"

    def progress(self) -> WorkflowInfo:
        """The run now: its state, children by state, and the body's last ``report``."""
        return self.gateway._api.get(f"/workflows/{self.id}", WorkflowInfo)

    @property
    def state(self) -> WorkflowState:
        return self.progress().state

    def result(self, timeout: float | None = None) -> R:
        """Wait for the body's return value; raises its error if it failed,
        :class:`WorkflowCancelled` if the run was killed. A paused run is waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.progress()
            if info.state in (WorkflowState.FINISHED, WorkflowState.FAILED):
                (body,) = self.gateway._adopt([info.body_job_id])
                return body.result(timeout=_left(deadline))  # type: ignore[no-any-return]
            if info.state is WorkflowState.CANCELLED:
                raise WorkflowCancelled(
                    f"workflow run {self.id} was killed ({info.error}); run.retry() runs it "
                    "again, reusing its finished calls",
                    info.body_job_id,
                )
            left = _left(deadline)
            if left is not None and left <= 0:
                raise TimeoutError(f"workflow run {self.id} is still {info.state}")
            if info.state is WorkflowState.PAUSED:
                time.sleep(PAUSED_POLL if left is None else min(PAUSED_POLL, left))
                continue
            (body,) = self.gateway._adopt([info.body_job_id])
            # ends when the body ends: finished, failed, or cancelled by a pause or kill;
            # whichever it is (or the timeout), the run's state says what comes next
            with contextlib.suppress(TimeoutError, concurrent.futures.CancelledError):
                body.exception(timeout=left)

    def logs(self, follow: bool = False) -> list[str] | Iterator[str]:
        """The lines the current body printed (``follow=True``: live, until it ends)."""
        return self.gateway.logs(self.progress().body_job_id, follow)

    def pause(self) -> WorkflowInfo:
        """Stop the body; children keep running, and their results wait in the journal."""
        return self._command("pause")

    def resume(self) -> WorkflowInfo:
        """Run a paused body again: calls it made before return from the journal."""
        return self._command("resume")

    def kill(self) -> WorkflowInfo:
        """Cancel the body and every child that has not ended."""
        return self._command("kill")

    def retry(self) -> WorkflowInfo:
        """Run a failed or killed run again: finished calls are reused, failed ones rerun."""
        return self._command("retry")

    def _command(self, command: str) -> WorkflowInfo:
        response = self.gateway._api.request("POST", f"/workflows/{self.id}/{command}")
        return WorkflowInfo.model_validate_json(response.content)

    def monitor(self) -> WorkflowMonitor:
        """A live widget: state, children by state, and what the body reports."""
        from .widgets import WorkflowMonitor

        return WorkflowMonitor(self)

    def _repr_html_(self) -> str:
        """The run now, as Jupyter shows it (``run.monitor()``: the same, kept live)."""
        from .widgets._workflow import workflow_html

        return workflow_html(self.progress())


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def runs(gateway: BaseGateway, name: str | None = None, limit: int = 100) -> list[WorkflowInfo]:
    params = {"name": name, "limit": limit}
    return gateway._api.get("/workflows", WorkflowList, params=params).workflows


def find_run(gateway: BaseGateway, name_or_id: str | int) -> WorkflowRun[Any]:
    """A run by id, or the newest run of the workflow of that name."""
    if isinstance(name_or_id, int) or str(name_or_id).isdigit():
        info = gateway._api.get(f"/workflows/{int(name_or_id)}", WorkflowInfo)
        return WorkflowRun(gateway, info.id, info.name)
    found = runs(gateway, str(name_or_id), limit=1)
    if not found:
        raise FarsideError(f"no workflow run named {name_or_id!r}; gw.workflows() lists your runs")
    return WorkflowRun(gateway, found[0].id, found[0].name)


def report(**values: Any) -> None:
    """Inside a workflow body: publish how far it is (``iteration=3, best=0.91``), for
    ``run.progress()`` and the widget. Values must be JSON; the last report wins.
    Outside a workflow body (the workflow called as a plain function) it does nothing."""
    gateway = get_gateway()
    workflow_id = gateway.user.workflow_id
    if workflow_id is None:
        return
    gateway._api.request(
        "POST",
        f"/workflows/{workflow_id}/report",
        json=WorkflowReport(values=values).model_dump(mode="json"),
    )


@overload
def workflow(fn: Callable[P, R], /) -> Workflow[P, R]: ...
@overload
def workflow(
    *,
    max_walltime: int | str = "1d",
    cores: int = 1,
    memory: int | str | None = None,
    name: str | None = None,
    sites: Iterable[str] | None = None,
    env: str | None = None,
    priority: int = 0,
    gateway: BaseGateway | None = None,
) -> Callable[[Callable[P, R]], Workflow[P, R]]: ...


def workflow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function a workflow: ``@farside.workflow`` or ``@farside.workflow(max_walltime=
    "1d")``. Its body runs as a job (``cores``, ``memory``, ``sites``, ``env`` of that job;
    ``max_walltime``: the longest a run goes without a pause) and submits tasks.

    >>> @workflow
    ... def twice(x):
    ...     return 2 * x
    >>> twice(4)
    8
    """
    if fn is not None:
        return Workflow(fn, **options)

    def decorate(f: Callable[P, R]) -> Workflow[P, R]:
        return Workflow(f, **options)

    return decorate
