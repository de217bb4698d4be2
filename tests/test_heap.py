"""streamer/heap.py: freed memory is handed back once a burst has drained, not on every tick."""

from __future__ import annotations

import gc
import weakref

import pytest

from streamer.heap import (
    MIN_INTERVAL_SECONDS,
    RELEASE_BYTES,
    Trimmer,
    held_bytes,
    malloc_trim,
    release_heap,
)
from tests.fixtures.emulator import FakeClock

MB = 2**20


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.mark.parametrize("peak_mb", [5, 40, 400])
def test_one_trim_per_burst_once_it_has_drained(peak_mb: int) -> None:
    trim, clock = Counting(), FakeClock()
    heap = Trimmer(trim, clock)
    for held in range(0, peak_mb * MB, MB // 2):  # a burst builds up: nothing to give back
        heap.observe(held)
        clock.advance(0.05)
    assert trim.calls == 0
    heap.observe(0)  # drained at once
    assert trim.calls == 1
    for _ in range(100):  # idle afterwards: nothing more was freed
        clock.advance(0.05)
        heap.observe(0)
    assert trim.calls == 1


def test_a_slow_drain_trims_at_most_once_per_interval_and_at_its_end() -> None:
    trim, clock = Counting(), FakeClock()
    heap = Trimmer(trim, clock)
    heap.observe(100 * MB)
    held = 100 * MB
    while held > 0:  # 100 MB freed over 5 s
        held = max(0, held - MB)
        clock.advance(0.05)
        heap.observe(held)
    assert 1 < trim.calls <= 5 / MIN_INTERVAL_SECONDS + 1
    clock.advance(MIN_INTERVAL_SECONDS)
    heap.observe(0)
    last = trim.calls
    clock.advance(MIN_INTERVAL_SECONDS)
    heap.observe(0)
    assert trim.calls == last  # whatever the drain freed last is trimmed, once


def test_swings_smaller_than_the_release_threshold_never_trim() -> None:
    trim, clock = Counting(), FakeClock()
    heap = Trimmer(trim, clock)
    for i in range(1000):
        heap.observe(50 * MB + (RELEASE_BYTES - 1) * (i % 2))
        clock.advance(1.0)
    assert trim.calls == 0


def test_without_a_trim_function_it_only_watches() -> None:
    heap = Trimmer(None, FakeClock())
    heap.observe(100 * MB)
    heap.observe(0)
    assert heap.trims == 0


def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = malloc_trim()
    assert trim is not None  # the image and CI are glibc (Debian)
    trim()


def test_held_bytes_counts_events_and_cohorts() -> None:
    assert held_bytes(0, 0) == 0
    assert held_bytes(1000, 0) == 1000
    assert held_bytes(0, 2000) > held_bytes(0, 1000) > 0


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.parametrize("cycles", [1, 100, 10_000])
def test_a_release_collects_the_cycles_a_burst_left(cycles: int) -> None:
    """The young-generation threshold is high (app.tune_gc): a burst's cyclic garbage (closed
    connections, asyncio internals) would wait long for a collection and keep its arenas."""
    gc.disable()  # as under the streamer's threshold: no collection happens by itself meanwhile
    try:
        refs = []
        for _ in range(cycles):
            a, b = Node(), Node()
            a.other, b.other = b, a
            refs.append(weakref.ref(a))
        del a, b
        assert all(ref() is not None for ref in refs)
        release_heap()()
        assert all(ref() is None for ref in refs)
    finally:
        gc.enable()
