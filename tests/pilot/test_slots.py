"""Slot accounting and the prefetch rule."""

from __future__ import annotations

import pytest

from farside_pilot.slots import Prefetch, Shape, Slot
from farside_protocol.models import Resources


def need(cores: int = 1, memory: int = 1, gpus: int = 0) -> Resources:
    return Resources(cores=cores, memory=memory, gpus=gpus)


def test_take_and_release() -> None:
    slot = Slot(Shape(cores=4, memory=100, gpus=1))
    slot.take(need(cores=3, memory=60, gpus=1))
    assert slot.busy
    assert slot.can_start(need(cores=1, memory=40))
    assert not slot.can_start(need(cores=2))
    assert not slot.can_start(need(memory=41))
    assert not slot.can_start(need(gpus=1))
    with pytest.raises(ValueError, match="only"):
        slot.take(need(cores=2))
    slot.release(need(cores=3, memory=60, gpus=1))
    assert slot.free == Shape(4, 100, 1)
    assert not slot.busy


def test_fits_slot_ignores_what_runs() -> None:
    slot = Slot(Shape(cores=2, memory=10))
    slot.take(need(cores=2))
    assert slot.fits_slot(need(cores=2))
    assert not slot.fits_slot(need(cores=3))


def test_prefetch_starts_without_extra() -> None:
    # Until a job has been seen to be short, hold only what can start.
    prefetch = Prefetch(cap=256)
    assert prefetch.want(free_cores=4, queued=0) == 4
    assert prefetch.want(free_cores=0, queued=0) == 0


def test_prefetch_asks_again_when_the_local_queue_is_half_used() -> None:
    prefetch = Prefetch(cap=256, initial=10)
    assert prefetch.want(free_cores=0, queued=10) == 0
    assert prefetch.want(free_cores=0, queued=6) == 0  # room for 4 of 10: not yet
    assert prefetch.want(free_cores=0, queued=5) == 5
    assert prefetch.want(free_cores=2, queued=0) == 12


def test_prefetch_grows_while_jobs_are_short_up_to_the_cap() -> None:
    prefetch = Prefetch(cap=16)
    prefetch.observe(0.001)
    assert prefetch.extra == 2
    prefetch.observe(0.001)
    assert prefetch.extra == 3
    for _ in range(100):
        prefetch.observe(0.001)
    assert prefetch.extra == 16


def test_prefetch_stops_for_long_jobs_and_recovers() -> None:
    prefetch = Prefetch(cap=16)
    for _ in range(10):
        prefetch.observe(0.001)
    prefetch.observe(0.1)  # neither short nor long: keep
    assert prefetch.extra == 11
    prefetch.observe(3.0)
    assert prefetch.extra == 0
    assert prefetch.want(free_cores=0, queued=0) == 0
    assert prefetch.want(free_cores=2, queued=0) == 2
    prefetch.observe(0.001)
    assert prefetch.extra == 2


def test_prefetch_cap_zero_never_holds_extra() -> None:
    prefetch = Prefetch(cap=0)
    prefetch.observe(0.001)
    assert prefetch.extra == 0
