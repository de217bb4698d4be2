"""Tuning CPython's cyclic garbage collector for the streamer's allocation pattern."""

from __future__ import annotations

import gc

# Young-generation threshold of the cyclic GC (CPython's default is 700 allocations): the
# net growth of tracked objects between automatic young collections.
GC_YOUNG_THRESHOLD = 1_000_000


def tune_gc() -> None:
    """Collect reference cycles rarely: the hot path allocates containers but makes no cycles.

    Measured when buffers still kept one tuple per event: with the default threshold the
    collector ran every few hundred events and walked every buffered entry, about a sixth of the
    catch-up CPU; at 50,000 its young collections cost 0.65 CPU-s per million events, at
    1,000,000 0.01 (gc.callbacks, the benchmark's catch-up). Buffers now hold Rust data, but
    each consumed batch still allocates thousands of Message objects. Freezing what start-up
    created keeps full collections off the (never freed) modules and config as well. The
    cycles a burst leaves are collected when it has drained (heap.release_heap).
    """
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
