"""Notebook widgets (ipywidgets) that watch farside work live.

- :class:`JobMonitor`: your jobs and maps by state, progress bars, failures with reasons;
  from one ``GET /jobs`` and then the gateway's event stream.
- :class:`LogView`: a live, bounded log pane for a job, a map, or any set of jobs
  (:meth:`LogView.for_jobs`), stdout and stderr told apart.
- :class:`ClusterWidget`: a Dask cluster on farside (``gw.new_cluster``): worker leases by
  site and state, group targets, the last worker failure, above Dask's own cluster widget
  with its scale and adapt controls; it is what a cluster displays as in Jupyter.
- :class:`WorkflowMonitor`: a workflow run: state, calls by state, and what its body
  reports (iteration, best so far); it is what a run displays as in Jupyter.

Each widget does its network work and redraws on a background thread of its own, so the
kernel stays free while it updates; ``close()`` stops it. Needs ``ipywidgets`` (the
``farside[dask]`` extra) and, in JupyterLab 4, nothing else.

>>> from farside.widgets import JobMonitor, LogView        # doctest: +SKIP
>>> results = square.map(range(100))                       # doctest: +SKIP
>>> JobMonitor(gw)                                         # doctest: +SKIP
>>> LogView(gw, group=results)                             # doctest: +SKIP
"""

from __future__ import annotations

try:
    import ipywidgets as _ipywidgets  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in every test run
    from farside_protocol import ConfigurationError

    raise ConfigurationError(
        "farside.widgets needs ipywidgets: pip install 'farside[dask]' (or ipywidgets>=8.1)"
    ) from exc

from .._cluster_widget import ClusterWidget
from ._board import Failure
from ._html import LogEntry
from ._logview import LogView
from ._monitor import JobMonitor
from ._workflow import WorkflowMonitor

__all__ = ["ClusterWidget", "Failure", "JobMonitor", "LogEntry", "LogView", "WorkflowMonitor"]
