"""Seeded fault injection for Cohort Sync requests.

Exactly one random number is drawn per request that reaches the fault step, whatever the
ratios are, so two emulators with the same seed that see the same sequence of requests make
the same decisions, and changing a ratio does not shift the sequence.
"""

from __future__ import annotations

import random
from enum import Enum


class Fault(Enum):
    NONE = "none"
    SERVER_ERROR = "500"
    RATE_LIMITED = "429"


class FaultInjector:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    def decide(self, fail_5xx_ratio: float, fail_429_ratio: float) -> Fault:
        draw = self._rng.random()
        if draw < fail_5xx_ratio:
            return Fault.SERVER_ERROR
        if draw < fail_5xx_ratio + fail_429_ratio:
            return Fault.RATE_LIMITED
        return Fault.NONE
