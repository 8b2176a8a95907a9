"""Synthetic NanoAOD-like ROOT files for the dimuon example: a Z → μμ peak on a falling
background, any size, reproducible from a seed.

Each file holds a TTree ``Events`` with the branches a CMS NanoAOD file has for muons::

    run, luminosityBlock (uint32), event (uint64)
    nMuon (int32)
    Muon_pt, Muon_eta, Muon_phi, Muon_mass (float32[]), Muon_charge (int32[])

Muons are sorted by falling pt within an event, as in NanoAOD. An event is one of

* **Z → μμ** (``signal_fraction``): a Breit-Wigner mass around ``Z_MASS`` (width
  ``Z_WIDTH``, cut at ±40 GeV), two muons of opposite charge;
* **continuum** (``background_fraction``): a pair whose mass falls exponentially from
  ``BACKGROUND_START`` (scale ``BACKGROUND_SCALE``), charges drawn independently;
* **no pair**: the rest;

plus a Poisson number of soft muons in every event. Pairs get a transverse momentum, a
rapidity and an isotropic decay, muon pt is smeared by ``PT_RESOLUTION``, and muons outside
the acceptance (pt < 3 GeV or \\|eta\\| > 2.4) are dropped, so some pairs lose a muon.

Event ``k`` of file ``i`` depends only on ``(seed, i, k)`` and the fractions: events are
drawn in blocks of ``BLOCK_EVENTS`` with a random stream per block, so the number of files,
their size and ``chunk_events`` (how many events are held in memory and written as one
basket per branch) never change the events themselves.

>>> from farside.datasets import make_dimuon_files
>>> paths = make_dimuon_files("data", n_files=2, events_per_file=10_000, seed=1)  # doctest: +SKIP
>>> [p.name for p in paths]                                                       # doctest: +SKIP
['dimuon-000.root', 'dimuon-001.root']

The same from a shell: ``python -m farside.datasets data --files 2 --events 10000``.

numpy is imported with this module, awkward when events are made, uproot when they are
written; ``import farside`` imports none of them (nor this module).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKGROUND_SCALE",
    "BACKGROUND_START",
    "BLOCK_EVENTS",
    "BRANCH_TYPES",
    "MAX_ABS_ETA",
    "MIN_PT",
    "MUON_MASS",
    "PAIR_PT_SCALE",
    "PAIR_RAPIDITY_SPREAD",
    "PT_RESOLUTION",
    "SOFT_MUONS_MEAN",
    "SOFT_PT_SCALE",
    "Z_MASS",
    "Z_WIDTH",
    "dimuon_events",
    "main",
    "make_dimuon_files",
]

Z_MASS = 91.1876  # GeV (PDG)
Z_WIDTH = 2.4952  # GeV (PDG)
MUON_MASS = 0.1056583755  # GeV (PDG)
BACKGROUND_START = 0.5  # GeV: the continuum starts here ...
BACKGROUND_SCALE = 25.0  # GeV: ... and falls by 1/e every this many GeV
PT_RESOLUTION = 0.015  # relative muon pt smearing
PAIR_PT_SCALE = 8.0  # GeV: mean transverse momentum of a pair
PAIR_RAPIDITY_SPREAD = 1.2
SOFT_MUONS_MEAN = 0.3  # soft muons per event (Poisson)
SOFT_PT_SCALE = 4.0  # GeV above the 3 GeV threshold
MIN_PT = 3.0  # GeV
MAX_ABS_ETA = 2.4
BLOCK_EVENTS = 1024  # events per random stream: the unit of reproducibility

BRANCH_TYPES: dict[str, Any] = {
    "run": np.uint32,
    "luminosityBlock": np.uint32,
    "event": np.uint64,
    # uproot names the counter nMuon and the columns Muon_pt, ... (NanoAOD's names)
    "Muon": "var * {pt: float32, eta: float32, phi: float32, mass: float32, charge: int32}",
}

Float = npt.NDArray[np.float64]
Int = npt.NDArray[np.int64]


@dataclass
class _Muons:
    """Flat muon columns of consecutive events, grouped by event, with per-event counts."""

    counts: Int
    pt: Float
    eta: Float
    phi: Float
    charge: Int

    def events(self, start: int, stop: int) -> _Muons:
        offsets = np.concatenate([[0], np.cumsum(self.counts)])
        lo, hi = offsets[start], offsets[stop]
        return _Muons(
            self.counts[start:stop],
            self.pt[lo:hi],
            self.eta[lo:hi],
            self.phi[lo:hi],
            self.charge[lo:hi],
        )

    @staticmethod
    def concatenate(parts: Sequence[_Muons]) -> _Muons:
        return _Muons(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _Muons.__dataclass_fields__)
        )


# ---------------------------------------------------------------------------- physics


def _breit_wigner(rng: np.random.Generator, n: int) -> Float:
    """Masses from a Breit-Wigner cut at Z_MASS ± 40 GeV (inverse CDF, no rejection)."""
    half = Z_WIDTH / 2
    lo, hi = (np.arctan(d / half) for d in (-40.0, 40.0))
    return Z_MASS + half * np.tan(rng.uniform(lo, hi, n))


def _decay(
    rng: np.random.Generator, mass: Float
) -> tuple[tuple[Float, Float, Float], tuple[Float, Float, Float]]:
    """Two muons' (px, py, pz) from pairs of ``mass``: a pair momentum, an isotropic decay."""
    n = len(mass)
    pair_pt = rng.exponential(PAIR_PT_SCALE, n)
    rapidity = rng.normal(0.0, PAIR_RAPIDITY_SPREAD, n)
    pair_phi = rng.uniform(-np.pi, np.pi, n)
    cos_theta = rng.uniform(-1.0, 1.0, n)
    decay_phi = rng.uniform(-np.pi, np.pi, n)

    mt = np.hypot(mass, pair_pt)
    energy = mt * np.cosh(rapidity)
    pair = np.stack(
        [pair_pt * np.cos(pair_phi), pair_pt * np.sin(pair_phi), mt * np.sinh(rapidity)]
    )
    # in the pair's rest frame each muon has energy m/2 and momentum q along a random axis
    e_star = mass / 2
    q_abs = np.sqrt(np.maximum(e_star**2 - MUON_MASS**2, 0.0))
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    q = q_abs * np.stack([sin_theta * np.cos(decay_phi), sin_theta * np.sin(decay_phi), cos_theta])
    # boost by the pair's momentum P: p = q + P ((P·q) / (m (E + m)) ± e*/m)
    p_dot_q = np.sum(pair * q, axis=0)
    along = p_dot_q / (mass * (energy + mass))
    first = q + pair * (along + e_star / mass)
    second = -q + pair * (-along + e_star / mass)
    return (first[0], first[1], first[2]), (second[0], second[1], second[2])


def _block(
    seed: int, file_index: int, block: int, signal_fraction: float, background_fraction: float
) -> _Muons:
    """The BLOCK_EVENTS events of one random stream, muons sorted by falling pt."""
    rng = np.random.default_rng([seed, file_index, block])
    n = BLOCK_EVENTS
    kind = rng.uniform(0.0, 1.0, n)
    is_signal = kind < signal_fraction
    is_continuum = (kind >= signal_fraction) & (kind < signal_fraction + background_fraction)

    signal_events = np.flatnonzero(is_signal)
    continuum_events = np.flatnonzero(is_continuum)
    pair_events = np.concatenate([signal_events, continuum_events])
    mass = np.concatenate(
        [
            _breit_wigner(rng, len(signal_events)),
            BACKGROUND_START + rng.exponential(BACKGROUND_SCALE, len(continuum_events)),
        ]
    )
    first, second = _decay(rng, mass)
    signal_charge = rng.choice([-1, 1], len(signal_events))
    charge_first = np.concatenate([signal_charge, rng.choice([-1, 1], len(continuum_events))])
    charge_second = np.concatenate([-signal_charge, rng.choice([-1, 1], len(continuum_events))])

    n_soft = rng.poisson(SOFT_MUONS_MEAN, n)
    soft_events = np.repeat(np.arange(n), n_soft)
    n_extra = len(soft_events)
    soft_pt = MIN_PT + rng.exponential(SOFT_PT_SCALE, n_extra)
    soft_eta = rng.uniform(-MAX_ABS_ETA, MAX_ABS_ETA, n_extra)
    soft_phi = rng.uniform(-np.pi, np.pi, n_extra)
    soft_charge = rng.choice([-1, 1], n_extra)

    px, py, pz = (np.concatenate([a, b]) for a, b in zip(first, second, strict=True))
    pair_pt = np.hypot(px, py)
    event = np.concatenate([pair_events, pair_events, soft_events])
    smear = 1.0 + PT_RESOLUTION * rng.standard_normal(len(event))
    pt = np.concatenate([pair_pt, soft_pt]) * smear
    eta = np.concatenate([np.arcsinh(pz / pair_pt), soft_eta])
    phi = np.concatenate([np.arctan2(py, px), soft_phi])
    charge = np.concatenate([charge_first, charge_second, soft_charge])

    keep = (pt > MIN_PT) & (np.abs(eta) < MAX_ABS_ETA)
    order = np.lexsort((-pt[keep], event[keep]))  # by event, then falling pt
    return _Muons(
        np.bincount(event[keep], minlength=n),
        pt[keep][order],
        eta[keep][order],
        phi[keep][order],
        charge[keep][order].astype(np.int64),
    )


def _muons(
    seed: int,
    file_index: int,
    start: int,
    stop: int,
    signal_fraction: float,
    background_fraction: float,
) -> _Muons:
    first, end = start // BLOCK_EVENTS, -(-stop // BLOCK_EVENTS)
    blocks = [
        _block(seed, file_index, b, signal_fraction, background_fraction)
        for b in range(first, max(end, first + 1))
    ]
    skip = start - first * BLOCK_EVENTS
    return _Muons.concatenate(blocks).events(skip, skip + stop - start)


def _check_fractions(signal_fraction: float, background_fraction: float) -> None:
    if min(signal_fraction, background_fraction) < 0 or signal_fraction + background_fraction > 1:
        raise ValueError(
            f"signal_fraction={signal_fraction} and background_fraction={background_fraction} "
            "must be at least 0 and add up to at most 1"
        )


# ---------------------------------------------------------------------------- public


def dimuon_events(
    n_events: int,
    *,
    start: int = 0,
    seed: int = 1,
    file_index: int = 0,
    signal_fraction: float = 0.3,
    background_fraction: float = 0.5,
) -> Any:
    """Events ``start`` to ``start + n_events`` of file ``file_index``, as an awkward array.

    Fields ``run``, ``luminosityBlock`` (``file_index + 1``), ``event`` (counted from 1 in
    each file) and ``Muon``: a list of records with ``pt``, ``eta``, ``phi``, ``mass`` and
    ``charge``, typed as in the files.

    >>> events = dimuon_events(1000, seed=7)
    >>> events.fields
    ['run', 'luminosityBlock', 'event', 'Muon']
    >>> later = dimuon_events(10, start=990, seed=7)      # the same events, wherever cut
    >>> later.Muon.pt.tolist() == events.Muon.pt[990:].tolist()
    True
    """
    import awkward as ak  # type: ignore[import-untyped]

    if n_events < 0 or start < 0:
        raise ValueError(f"need n_events >= 0 and start >= 0, got {n_events}, {start}")
    _check_fractions(signal_fraction, background_fraction)
    stop = start + n_events
    mu = _muons(seed, file_index, start, stop, signal_fraction, background_fraction)
    columns = {
        "pt": mu.pt.astype(np.float32),
        "eta": mu.eta.astype(np.float32),
        "phi": mu.phi.astype(np.float32),
        "mass": np.full(len(mu.pt), MUON_MASS, np.float32),
        "charge": mu.charge.astype(np.int32),
    }
    return ak.zip(
        {
            "run": np.ones(n_events, np.uint32),
            "luminosityBlock": np.full(n_events, file_index + 1, np.uint32),
            "event": np.arange(start + 1, stop + 1, dtype=np.uint64),
            "Muon": ak.unflatten(ak.zip(columns), mu.counts),
        },
        depth_limit=1,
    )


def make_dimuon_files(
    directory: str | os.PathLike[str],
    n_files: int = 4,
    events_per_file: int = 100_000,
    *,
    seed: int = 1,
    chunk_events: int = 100_000,
    signal_fraction: float = 0.3,
    background_fraction: float = 0.5,
    prefix: str = "dimuon",
) -> list[Path]:
    """Write ``n_files`` files of ``events_per_file`` events each; return their paths.

    Files are named ``{prefix}-000.root``, ... in ``directory`` (created if missing) and
    replace files of the same name. At most ``chunk_events`` events are held in memory at a
    time; each chunk becomes one basket per branch. A file appears under its name only when
    it is complete.
    """
    import uproot  # type: ignore[import-untyped]

    if n_files < 0 or events_per_file < 0:
        raise ValueError(
            f"need n_files >= 0 and events_per_file >= 0, got {n_files}, {events_per_file}"
        )
    if chunk_events < 1:
        raise ValueError(f"chunk_events must be at least 1, got {chunk_events}")
    _check_fractions(signal_fraction, background_fraction)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = out / f"{prefix}-{i:03d}.root"
        partial = path.with_name(path.name + ".part")
        n_chunks = max(1, math.ceil(events_per_file / chunk_events))
        with uproot.recreate(partial) as file:
            # room for every basket up front, so the tree's metadata is never rewritten
            tree = file.mktree("Events", BRANCH_TYPES, initial_basket_capacity=n_chunks + 1)
            for start in range(0, events_per_file, chunk_events):
                events = dimuon_events(
                    min(chunk_events, events_per_file - start),
                    start=start,
                    seed=seed,
                    file_index=i,
                    signal_fraction=signal_fraction,
                    background_fraction=background_fraction,
                )
                tree.extend({name: events[name] for name in BRANCH_TYPES})
        os.replace(partial, path)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m farside.datasets",
        description="Write synthetic NanoAOD-like ROOT files: a Z → μμ peak on a falling "
        "background (TTree Events with nMuon, Muon_pt, Muon_eta, Muon_phi, Muon_mass, "
        "Muon_charge), reproducible from --seed.",
    )
    parser.add_argument("directory", type=Path, help="where to write (created if missing)")
    parser.add_argument("--files", type=int, default=4, help="number of files (default 4)")
    parser.add_argument(
        "--events", type=int, default=100_000, help="events per file (default 100000)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--chunk",
        type=int,
        default=100_000,
        help="events held in memory and written per basket (default 100000)",
    )
    parser.add_argument(
        "--signal-fraction", type=float, default=0.3, help="fraction of Z → μμ events (default 0.3)"
    )
    parser.add_argument(
        "--background-fraction",
        type=float,
        default=0.5,
        help="fraction of continuum pairs (default 0.5)",
    )
    parser.add_argument("--prefix", default="dimuon", help="file name prefix (default dimuon)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        paths = make_dimuon_files(
            args.directory,
            args.files,
            args.events,
            seed=args.seed,
            chunk_events=args.chunk,
            signal_fraction=args.signal_fraction,
            background_fraction=args.background_fraction,
            prefix=args.prefix,
        )
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - began
    for path in paths:
        print(path)
    total = args.files * args.events
    rate = f", {total / elapsed:,.0f} events/s" if elapsed > 0 and total else ""
    print(f"{total:,} events in {len(paths)} files, {elapsed:.1f} s{rate}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
