"""The synthetic NanoAOD-like files (``farside.datasets``) and the dimuon analysis that reads
them (``farside.examples.dimuon``)."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import awkward as ak
import hist
import numpy as np
import pytest
import uproot

from farside import datasets
from farside.examples import dimuon

BRANCHES = ["run", "luminosityBlock", "event", "nMuon", *dimuon.MUON_BRANCHES]


def read(path: Path) -> Any:
    with uproot.open(path) as file:
        return file["Events"].arrays(BRANCHES)


def same(a: Any, b: Any) -> bool:
    return bool(ak.array_equal(a, b, check_parameters=False))


def pair_masses(events: Any) -> tuple[Any, Any, Any]:
    """Masses of two-muon events (opposite charge, same charge) by the massless formula
    m² = 2 pt₁ pt₂ (cosh Δη - cos Δφ), independent of the analysis module's four-vectors,
    and for the opposite-charge pairs the ratio of the muons' momenta."""
    two = events[events.nMuon == 2]
    pt, eta, phi, q = (
        ak.to_numpy(two[f"Muon_{f}"]).astype(np.float64) for f in ("pt", "eta", "phi", "charge")
    )
    m = np.sqrt(
        2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1]) - np.cos(phi[:, 0] - phi[:, 1]))
    )
    p = pt * np.cosh(eta)
    opposite = q[:, 0] != q[:, 1]
    return m[opposite], m[~opposite], (p[:, 0] / p[:, 1])[opposite]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files of 20,000 events, written 6,000 events at a time."""
    directory = tmp_path_factory.mktemp("dimuon")
    return datasets.make_dimuon_files(
        directory, n_files=2, events_per_file=20_000, seed=5, chunk_events=6_000
    )


# ---------------------------------------------------------------------------- reproducible


def test_same_seed_same_events_different_seed_different(tmp_path: Path) -> None:
    first = datasets.make_dimuon_files(tmp_path / "a", 2, 3_000, seed=11)
    again = datasets.make_dimuon_files(tmp_path / "b", 2, 3_000, seed=11)
    other = datasets.make_dimuon_files(tmp_path / "c", 2, 3_000, seed=12)
    for a, b, c in zip(first, again, other, strict=True):
        assert same(read(a), read(b))
        assert not same(read(a).Muon_pt, read(c).Muon_pt)
    assert not same(read(first[0]).Muon_pt, read(first[1]).Muon_pt)  # files differ too


def test_events_do_not_depend_on_chunks_file_count_or_size(tmp_path: Path) -> None:
    whole = datasets.make_dimuon_files(tmp_path / "a", 2, 5_000, seed=3, chunk_events=5_000)
    small = datasets.make_dimuon_files(tmp_path / "b", 3, 5_000, seed=3, chunk_events=777)
    longer = datasets.make_dimuon_files(tmp_path / "c", 2, 6_000, seed=3)
    for i in range(2):
        assert same(read(whole[i]), read(small[i]))
        assert same(read(whole[i]), read(longer[i])[:5_000])


def test_a_slice_of_events_is_the_same_events() -> None:
    events = datasets.dimuon_events(3_000, seed=2, file_index=1)
    part = datasets.dimuon_events(1_500, start=1_000, seed=2, file_index=1)
    assert same(part, events[1_000:2_500])
    assert len(datasets.dimuon_events(0, start=10)) == 0


# ---------------------------------------------------------------------------- chunks


def test_each_chunk_is_one_basket(tmp_path: Path) -> None:
    (path,) = datasets.make_dimuon_files(tmp_path, 1, 10_000, seed=1, chunk_events=3_000)
    with uproot.open(path) as file:
        tree = file["Events"]
        assert tree.num_entries == 10_000
        assert {tree[name].num_baskets for name in BRANCHES} == {math.ceil(10_000 / 3_000)}
        assert [tree["Muon_pt"].basket_entry_start_stop(i) for i in range(4)] == [
            (0, 3_000),
            (3_000, 6_000),
            (6_000, 9_000),
            (9_000, 10_000),
        ]


def test_no_more_than_a_chunk_of_events_is_made_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = datasets.dimuon_events

    def recording(n_events: int, **kwargs: Any) -> Any:
        sizes.append(n_events)
        return real(n_events, **kwargs)

    monkeypatch.setattr(datasets, "dimuon_events", recording)
    datasets.make_dimuon_files(tmp_path, 2, 2_500, seed=1, chunk_events=1_000)
    assert sizes == [1_000, 1_000, 500] * 2


def test_a_file_appears_only_when_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(n_events: int, **kwargs: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(datasets, "dimuon_events", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        datasets.make_dimuon_files(tmp_path, 1, 100, seed=1)
    assert not (tmp_path / "dimuon-000.root").exists()


# ---------------------------------------------------------------------------- content


def test_branches_are_nanoaod_like(files: list[Path]) -> None:
    with uproot.open(files[0]) as file:
        types = file["Events"].typenames()
    assert types == {
        "run": "uint32_t",
        "luminosityBlock": "uint32_t",
        "event": "uint64_t",
        "nMuon": "int32_t",
        "Muon_pt": "float[]",
        "Muon_eta": "float[]",
        "Muon_phi": "float[]",
        "Muon_mass": "float[]",
        "Muon_charge": "int32_t[]",
    }


def test_muons_are_jagged_sorted_and_in_acceptance(files: list[Path]) -> None:
    for index, path in enumerate(files):
        events = read(path)
        assert len(events) == 20_000
        assert events.event.tolist() == list(range(1, 20_001))
        assert set(events.luminosityBlock.tolist()) == {index + 1}
        counts = ak.to_numpy(events.nMuon)
        for name in dimuon.MUON_BRANCHES:
            assert ak.to_numpy(ak.num(events[name])).tolist() == counts.tolist()
        assert {0, 1, 2, 3} <= set(counts.tolist())  # jagged: none, one, a pair, a pair + soft
        assert 0.3 < np.mean(counts == 2) < 0.7
        pt = events.Muon_pt
        assert ak.all(pt[:, :-1] >= pt[:, 1:])  # falling pt, as in NanoAOD
        assert ak.min(pt) > datasets.MIN_PT
        assert ak.max(abs(events.Muon_eta)) < datasets.MAX_ABS_ETA
        assert ak.max(abs(events.Muon_phi)) <= np.pi
        assert set(ak.flatten(events.Muon_charge).tolist()) == {-1, 1}
        assert np.allclose(ak.flatten(events.Muon_mass), datasets.MUON_MASS)


def test_the_z_peak_is_where_it_should_be(files: list[Path]) -> None:
    opposite, same_sign, _ = pair_masses(read(files[0]))
    counts, edges = np.histogram(opposite, bins=np.arange(70.0, 110.0 + 0.5, 0.5))
    fullest = (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1]) / 2
    assert abs(fullest - datasets.Z_MASS) < 1.0
    window = opposite[abs(opposite - datasets.Z_MASS) < 10]
    assert abs(np.median(window) - datasets.Z_MASS) < 0.3
    # the Z decays to opposite charges only: same-sign pairs are the flat continuum
    assert np.sum(abs(same_sign - datasets.Z_MASS) < 5) < 0.05 * np.sum(
        abs(opposite - datasets.Z_MASS) < 5
    )
    # and the continuum falls: more pairs at 10-30 GeV than at 60-80 GeV
    assert np.sum((same_sign > 10) & (same_sign < 30)) > 3 * np.sum(
        (same_sign > 60) & (same_sign < 80)
    )


def test_fractions_move_the_peak_height_not_its_place() -> None:
    def z_peak(signal: float) -> tuple[int, float]:
        events = datasets.dimuon_events(
            5_000, seed=1, signal_fraction=signal, background_fraction=0.3
        )
        h = dimuon.mass_histogram(dimuon.dimuon_mass(events.Muon))
        return int(h[hist.loc(86.0) : hist.loc(96.0) : sum]), dimuon.peak_position(h)

    (none, _), (some, at), (more, also_at) = z_peak(0.0), z_peak(0.3), z_peak(0.6)
    assert none < 0.1 * some
    assert 1.5 * some < more
    assert abs(at - datasets.Z_MASS) < 1.0
    assert abs(also_at - datasets.Z_MASS) < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signal_fraction": 0.7, "background_fraction": 0.5}, "add up to at most 1"),
        ({"signal_fraction": -0.1}, "at least 0"),
        ({"chunk_events": 0}, "chunk_events must be at least 1"),
        ({"events_per_file": -1}, "events_per_file >= 0"),
    ],
)
def test_impossible_settings_are_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        datasets.make_dimuon_files(tmp_path, **{"n_files": 1, **kwargs})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- entry points


def test_command_line_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(tmp_path), "--files", "2", "--events", "1000", "--seed", "4", "--chunk", "300"]
    assert datasets.main(argv) == 0
    out, err = capsys.readouterr()
    assert out.split() == [str(tmp_path / "dimuon-000.root"), str(tmp_path / "dimuon-001.root")]
    assert "2,000 events in 2 files" in err
    with uproot.open(tmp_path / "dimuon-001.root") as file:
        assert file["Events"]["Muon_pt"].num_baskets == 4
    with pytest.raises(SystemExit):
        datasets.main([str(tmp_path), "--chunk", "0"])
    assert "chunk_events must be at least 1" in capsys.readouterr().err


def test_module_runs_as_a_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "farside.datasets", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "NanoAOD-like" in result.stdout


def test_importing_farside_imports_no_analysis_library() -> None:
    heavy = ["uproot", "awkward", "hist", "farside.datasets", "farside.examples.dimuon"]
    code = f"import sys, farside; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [datasets, dimuon])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


# ---------------------------------------------------------------------------- the analysis


def test_analysis_selects_and_measures_what_was_generated(files: list[Path]) -> None:
    events = read(files[1])
    opposite, _, ratio = pair_masses(events)
    masses = ak.to_numpy(dimuon.dimuon_mass(dimuon.read_muons(files[1])))
    assert len(masses) == len(opposite)
    # full four-vectors against the massless formula: the muon masses add
    # 2 m² + 2 (E₁E₂ - |p₁||p₂|) ≈ m² (2 + p₁/p₂ + p₂/p₁) to the mass squared
    added = masses**2 - opposite**2
    expected = datasets.MUON_MASS**2 * (2 + ratio + 1 / ratio)
    assert np.allclose(added, expected, rtol=0.01, atol=1e-3)
    h = dimuon.mass_histogram(masses)
    assert int(h.sum(flow=True)) == len(masses)
    assert int(h.sum()) == np.sum((masses >= 60) & (masses < 120))


def test_reading_in_steps_changes_nothing_and_merging_adds_up(files: list[Path]) -> None:
    whole = dimuon.process_file(files[0])
    assert dimuon.process_file(files[0], step_size=1_234) == whole
    both = dimuon.merge_histograms(dimuon.process_file(p) for p in files)
    assert (
        both.values(flow=True).tolist()
        == (whole.values(flow=True) + dimuon.process_file(files[1]).values(flow=True)).tolist()
    )
    assert both != whole
    mean, sigma = dimuon.fit_peak(both)
    assert abs(mean - datasets.Z_MASS) < 0.5
    assert 0.5 < sigma < 4.0
    assert abs(dimuon.peak_position(both) - datasets.Z_MASS) < 1.0
    with pytest.raises(ValueError, match="no histograms"):
        dimuon.merge_histograms([])
