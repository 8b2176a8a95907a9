"""The dimuon analysis: events with exactly two muons of opposite charge, their invariant
mass, a histogram of it.

Plain functions, so the same code runs in the notebook, inside a farside task (one file
per job: :func:`process_file`, then :func:`merge_histograms`) and on dask-awkward
partitions (:func:`events_mass` with ``dask_awkward.map_partitions``). farside is an
installed distribution, so a task that calls these functions imports this module by name
on the pilot: the pilot's Python needs the ``analysis`` extra.

The histogram (:func:`new_histogram`) is the Z window: 120 regular bins of 0.5 GeV from
60 to 120 GeV, finer than the Z width (2.5 GeV) and the mass resolution (~1.5 GeV) so the
peak's shape shows. Masses outside the window land in the underflow and overflow bins, so
``h.sum(flow=True)`` is the number of selected events. Counts are exact integers (``Int64``
storage), which makes histograms filled in different places comparable with ``==``.

>>> import math, awkward as ak
>>> muons = ak.Array([
...     [{"pt": 45.6, "eta": 0.0, "phi": 0.0, "mass": 0.1057, "charge": 1},      # back to back
...      {"pt": 45.6, "eta": 0.0, "phi": math.pi, "mass": 0.1057, "charge": -1}],
...     [{"pt": 30.0, "eta": 1.0, "phi": 0.0, "mass": 0.1057, "charge": 1},      # same charge
...      {"pt": 20.0, "eta": 0.0, "phi": 2.0, "mass": 0.1057, "charge": 1}],
...     [{"pt": 30.0, "eta": 0.0, "phi": 0.0, "mass": 0.1057, "charge": 1}],     # one muon
... ])
>>> [round(m, 3) for m in dimuon_mass(muons).tolist()]    # the one event that passes
[91.2]
>>> h = mass_histogram(dimuon_mass(muons))
>>> int(h.sum(flow=True)), peak_position(h)
(1, 91.25)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import awkward as ak  # type: ignore[import-untyped]
import hist
import numpy as np
import numpy.typing as npt

__all__ = [
    "MASS_BINS",
    "MASS_RANGE",
    "MUON_BRANCHES",
    "dimuon_mass",
    "events_mass",
    "fit_peak",
    "invariant_mass",
    "mass_histogram",
    "merge_histograms",
    "muons_from",
    "new_histogram",
    "peak_position",
    "process_file",
    "read_muons",
    "select_dimuons",
]

MUON_FIELDS = ("pt", "eta", "phi", "mass", "charge")
MUON_BRANCHES = [f"Muon_{field}" for field in MUON_FIELDS]
MASS_BINS = 120
MASS_RANGE = (60.0, 120.0)  # GeV

Histogram = hist.Hist[hist.storage.Int64]


# ---------------------------------------------------------------------------- reading


def muons_from(events: Any) -> Any:
    """The ``Muon_*`` columns of ``events`` (from uproot) as one list of muon records."""
    return ak.zip({field: events[f"Muon_{field}"] for field in MUON_FIELDS})


def read_muons(
    path: str | os.PathLike[str],
    *,
    tree: str = "Events",
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> Any:
    """The muons of one file (all of it at once: see :func:`process_file` for big files)."""
    import uproot  # type: ignore[import-untyped]

    with uproot.open(path) as file:
        events = file[tree].arrays(MUON_BRANCHES, entry_start=entry_start, entry_stop=entry_stop)
    return muons_from(events)


# ---------------------------------------------------------------------------- physics


def select_dimuons(muons: Any) -> Any:
    """The events with exactly two muons, and those of opposite charge."""
    pairs = muons[ak.num(muons, axis=1) == 2]
    return pairs[pairs.charge[:, 0] != pairs.charge[:, 1]]


def _four_momentum(mu: Any) -> tuple[Any, Any, Any, Any]:
    pt, eta, phi, mass = (ak.values_astype(mu[f], np.float64) for f in ("pt", "eta", "phi", "mass"))
    pz = pt * np.sinh(eta)
    return np.sqrt(pt**2 + pz**2 + mass**2), pt * np.cos(phi), pt * np.sin(phi), pz


def invariant_mass(first: Any, second: Any) -> Any:
    """Invariant mass of two particles given as records of pt, eta, phi and mass, in float64.

    m² = (E₁ + E₂)² - |p₁ + p₂|² with E = √(pt² cosh² η + m²), px = pt cos φ,
    py = pt sin φ, pz = pt sinh η (negative m² from rounding becomes 0).
    """
    e1, px1, py1, pz1 = _four_momentum(first)
    e2, px2, py2, pz2 = _four_momentum(second)
    m2 = (e1 + e2) ** 2 - (px1 + px2) ** 2 - (py1 + py2) ** 2 - (pz1 + pz2) ** 2
    return np.sqrt(np.maximum(m2, 0.0))


def dimuon_mass(muons: Any) -> Any:
    """The invariant mass of each selected event's muon pair: one number per event."""
    pairs = select_dimuons(muons)
    return invariant_mass(pairs[:, 0], pairs[:, 1])


def events_mass(events: Any) -> Any:
    """:func:`dimuon_mass` of uproot events with ``Muon_*`` columns (a dask-awkward partition)."""
    return dimuon_mass(muons_from(events))


# ---------------------------------------------------------------------------- histograms


def new_histogram() -> Histogram:
    """An empty dimuon mass histogram: 120 bins, 60-120 GeV, exact integer counts."""
    return hist.Hist(
        hist.axis.Regular(MASS_BINS, *MASS_RANGE, name="mass", label="Dimuon mass [GeV]"),
        storage=hist.storage.Int64(),
    )


def mass_histogram(masses: Any) -> Histogram:
    """A new histogram filled with ``masses`` (an awkward or numpy array, one per event)."""
    h = new_histogram()
    h.fill(mass=ak.to_numpy(masses))
    return h


def process_file(path: str | os.PathLike[str], *, step_size: int = 100_000) -> Histogram:
    """The mass histogram of one file, read ``step_size`` events at a time.

    Memory stays bounded by the step, whatever the file's size: this is the function to run
    once per file on farside.
    """
    import uproot

    h = new_histogram()
    with uproot.open(path) as file:
        for events in file["Events"].iterate(MUON_BRANCHES, step_size=step_size):
            h.fill(mass=ak.to_numpy(events_mass(events)))
    return h


def merge_histograms(histograms: Iterable[Histogram]) -> Histogram:
    """The sum of histograms with the same axes (a ValueError for none, boost's for others)."""
    merged: Histogram | None = None
    for h in histograms:
        merged = h.copy() if merged is None else merged + h
    if merged is None:
        raise ValueError("no histograms to merge")
    return merged


# ---------------------------------------------------------------------------- the peak


def peak_position(h: Histogram) -> float:
    """The center of the fullest bin (flow bins left out)."""
    return float(h.axes[0].centers[int(np.argmax(h.values()))])


def fit_peak(h: Histogram, half_width: float = 3.0) -> tuple[float, float]:
    """Mean and width of a Gaussian fitted around the fullest bin, ±``half_width`` GeV.

    A weighted parabola through the logarithm of the counts (numpy only, no scipy): good
    for locating the Z peak, not a line-shape measurement.
    """
    centers: npt.NDArray[np.float64] = h.axes[0].centers
    counts = h.values().astype(np.float64)
    near = (np.abs(centers - peak_position(h)) <= half_width) & (counts > 0)
    if near.sum() < 3:
        raise ValueError("too few filled bins near the peak to fit it; fill more events")
    a, b, _ = np.polyfit(centers[near], np.log(counts[near]), 2, w=np.sqrt(counts[near]))
    if a >= 0:
        raise ValueError("no peak: the counts near the fullest bin do not fall on both sides")
    return float(-b / (2 * a)), float(np.sqrt(-1 / (2 * a)))
