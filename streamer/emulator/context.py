"""The emulator's mutable world: knobs, segments, limiter, fault RNG and statistics.

One instance per running emulator, stored on the aiohttp application. Everything runs on one
event loop, so handlers mutate it without locks as long as they do not await in between a
decision and the state change it depends on.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .config import EmulatorConfig, Knobs
from .faults import FaultInjector
from .quotas import Quotas
from .ratelimit import RateLimiter
from .state import SegmentStore
from .stats import Stats


class EmulatorContext:
    def __init__(self, config: EmulatorConfig) -> None:
        self.workspace_id = config.workspace_id
        self.clock = config.clock
        self.initial_knobs = config.knobs
        self.knobs = config.knobs
        self.store = SegmentStore()
        self.faults = FaultInjector(config.knobs.seed)
        self.limiter = RateLimiter(
            config.knobs.rate_limit_per_minute, config.knobs.rate_window_seconds
        )
        self.stats = Stats(config.knobs.rate_window_seconds)
        self.quotas = Quotas()
        self.jobs: set[asyncio.Task[None]] = set()  # file jobs still running (file_jobs.py)

    def set_knobs(self, knobs: Knobs) -> None:
        """Swap in new knobs; a new seed restarts the fault sequence from its beginning."""
        previous = self.knobs
        self.knobs = knobs
        self.limiter.reconfigure(knobs.rate_limit_per_minute, knobs.rate_window_seconds)
        self.stats.set_window(knobs.rate_window_seconds)
        if knobs.seed != previous.seed:
            self.faults.reseed(knobs.seed)

    def reset(self, restore_knobs: bool) -> None:
        """Forget segments, statistics, the rate window and quotas; reseed the fault RNG."""
        if restore_knobs:
            self.knobs = self.initial_knobs
        knobs = self.knobs
        self.store.clear()
        self.faults.reseed(knobs.seed)
        self.limiter = RateLimiter(knobs.rate_limit_per_minute, knobs.rate_window_seconds)
        self.stats = Stats(knobs.rate_window_seconds)
        self.quotas = Quotas()


# Where handlers find the context on the aiohttp application.
CONTEXT: web.AppKey[EmulatorContext] = web.AppKey("emulator_context", EmulatorContext)
