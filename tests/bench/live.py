"""Live load for the latency phase, and event-to-acknowledgement latency from the recorder.

Every (cohort, action, uid) occurs at most once: users enter once and some exit later, so the
recorder's first apply time of that triple is exactly when the API acknowledged the event. An
enter superseded by its exit inside one buffer is acknowledged with the exit (the streamer acks
superseded events with the event that won), so it takes the exit's apply time.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.bench.workload import producer

TICK_S = 0.02
EXIT_AFTER_S = 5.0  # exit users who entered at least this long ago
EXIT_SHARE = 0.4


@dataclass
class LiveEvent:
    cohort: str
    enter: bool
    uid: str
    ts_ms: int


@dataclass
class LiveLoad:
    bootstrap: str
    topic: str
    cohorts: int
    rate: float
    seed: int = 3
    events: list[LiveEvent] = field(default_factory=list)

    @property
    def produced(self) -> int:
        return len(self.events)

    def run(self, seconds: float) -> None:
        """Produce `rate` events/s for `seconds`, spread evenly over small ticks."""
        out = producer(self.bootstrap, linger_ms=5)
        rng = random.Random(self.seed)
        entered: list[deque[tuple[float, str]]] = [deque() for _ in range(self.cohorts)]
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            for _ in range(int(elapsed * self.rate) - len(self.events)):
                out.produce(self.topic, *self._next(rng, entered))
            out.poll(0)
            time.sleep(TICK_S)
        if out.flush(30):
            raise RuntimeError("live events were not all delivered")

    def _next(
        self, rng: random.Random, entered: list[deque[tuple[float, str]]]
    ) -> tuple[bytes, bytes]:
        """(value, key) of the next event: an old member exits, or a new user enters."""
        c = len(self.events) % self.cohorts
        now = time.time()
        queue = entered[c]
        leave = bool(queue) and queue[0][0] <= now - EXIT_AFTER_S and rng.random() < EXIT_SHARE
        if leave:
            uid = queue.popleft()[1]
        else:
            uid = f"live-{len(self.events):08d}"
            queue.append((now, uid))
        cohort = f"live-cohort-{c:02d}"
        ts_ms = int(now * 1000)
        self.events.append(LiveEvent(cohort, not leave, uid, ts_ms))
        event = {
            "action": "exit" if leave else "enter",
            "cohort_id": cohort,
            "uid": uid,
            "ts": ts_ms,
        }
        return orjson.dumps(event), uid.encode()


def latency_summary(events: list[LiveEvent], acks: dict[str, float]) -> dict[str, Any]:
    """p50/p99/max overall and per cohort; events never acknowledged are counted as lost."""
    per_cohort: dict[str, list[float]] = {}
    series: list[tuple[float, float]] = []
    lost = 0
    start = events[0].ts_ms / 1000 if events else 0.0
    for e in events:
        add = acks.get(f"{e.cohort} add_members {e.uid}")
        remove = acks.get(f"{e.cohort} remove_members {e.uid}")
        acked = (add if add is not None else remove) if e.enter else remove
        if acked is None:
            lost += 1
            continue
        seconds = acked - e.ts_ms / 1000
        per_cohort.setdefault(e.cohort, []).append(seconds)
        series.append((e.ts_ms / 1000 - start, seconds))
    everything = [x for xs in per_cohort.values() for x in xs]
    return {
        "acknowledged": len(everything),
        "lost": lost,
        **_quantiles(everything),
        "per_cohort": {c: {**_quantiles(xs), "events": len(xs)} for c, xs in per_cohort.items()},
        "series": _per_second(series),
    }


def _per_second(series: list[tuple[float, float]]) -> dict[str, list[float | None]]:
    """Latency quantiles of the events produced in each second (keeps the JSON small)."""
    buckets: dict[int, list[float]] = {}
    for t, seconds in series:
        buckets.setdefault(int(t), []).append(seconds)
    out: dict[str, list[float | None]] = {"t": [], "p50_s": [], "p99_s": [], "max_s": []}
    for second in sorted(buckets):
        q = _quantiles(buckets[second])
        out["t"].append(float(second))
        for key in ("p50_s", "p99_s", "max_s"):
            out[key].append(q[key])
    return out


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50_s": None, "p99_s": None, "max_s": max(values, default=None)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_s": cuts[49], "p99_s": cuts[98], "max_s": max(values)}
