"""Live load for the latency phases, and event-to-acknowledgement latency from the recorder.

A load is a sequence of steps (seconds, cohorts, rate); a step's events go round-robin to its
first `cohorts` cohorts, so cohorts shared by consecutive steps carry on.

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
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Step:
    seconds: float
    cohorts: int
    rate: float  # events/s


@dataclass
class LiveLoad:
    bootstrap: str
    topic: str
    seed: int = 3
    events: list[LiveEvent] = field(default_factory=list)

    @property
    def produced(self) -> int:
        return len(self.events)

    def run(self, steps: Sequence[Step]) -> None:
        """Produce each step's events/s for its seconds, spread evenly over small ticks."""
        out = producer(self.bootstrap, linger_ms=5)
        rng = random.Random(self.seed)
        entered: list[deque[tuple[float, str]]] = [
            deque() for _ in range(max(step.cohorts for step in steps))
        ]
        for step in steps:
            first = len(self.events)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < step.seconds:
                for _ in range(int(elapsed * step.rate) - (len(self.events) - first)):
                    out.produce(self.topic, *self._next(rng, entered, step.cohorts))
                out.poll(0)
                time.sleep(TICK_S)
        if out.flush(30):
            raise RuntimeError("live events were not all delivered")

    def _next(
        self, rng: random.Random, entered: list[deque[tuple[float, str]]], cohorts: int
    ) -> tuple[bytes, bytes]:
        """(value, key) of the next event: an old member exits, or a new user enters."""
        c = len(self.events) % cohorts
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


def acknowledged(
    events: list[LiveEvent], acks: dict[str, float]
) -> tuple[list[tuple[LiveEvent, float]], int]:
    """(event, seconds from its ts to the API applying it) of every acknowledged event, and how
    many were never acknowledged."""
    done: list[tuple[LiveEvent, float]] = []
    for e in events:
        add = acks.get(f"{e.cohort} add_members {e.uid}")
        remove = acks.get(f"{e.cohort} remove_members {e.uid}")
        acked = (add if add is not None else remove) if e.enter else remove
        if acked is not None:
            done.append((e, acked - e.ts_ms / 1000))
    return done, len(events) - len(done)


def streams(events: list[LiveEvent]) -> int:
    """The (cohort, action) streams the events make: what the budget must serve in turn."""
    return len({(e.cohort, e.enter) for e in events})


def latency_summary(
    events: list[LiveEvent], acks: dict[str, float], bucket_s: float = 1.0
) -> dict[str, Any]:
    """p50/p99/max overall and per cohort, the largest cohort p99 over the median cohort's,
    and quantiles per `bucket_s` of production time; unacknowledged events count as lost."""
    done, lost = acknowledged(events, acks)
    per_cohort: dict[str, list[float]] = {}
    for e, seconds in done:
        per_cohort.setdefault(e.cohort, []).append(seconds)
    start = events[0].ts_ms / 1000 if events else 0.0
    summary = {c: {**quantiles(xs), "events": len(xs)} for c, xs in per_cohort.items()}
    cohort_p99s = [q["p99_s"] for q in summary.values() if q["p99_s"] is not None]
    return {
        "acknowledged": len(done),
        "lost": lost,
        **quantiles([seconds for _, seconds in done]),
        "per_cohort": summary,
        "cohort_p99_max_vs_median": (
            max(cohort_p99s) / statistics.median(cohort_p99s) if cohort_p99s else None
        ),
        "series": _by_bucket([(e.ts_ms / 1000 - start, x) for e, x in done], bucket_s),
    }


def _by_bucket(series: list[tuple[float, float]], bucket_s: float) -> dict[str, list[float | None]]:
    """Latency quantiles of the events produced in each bucket (keeps the JSON small)."""
    buckets: dict[int, list[float]] = {}
    for t, seconds in series:
        buckets.setdefault(int(t / bucket_s), []).append(seconds)
    out: dict[str, list[float | None]] = {"t": [], "p50_s": [], "p99_s": [], "max_s": []}
    for bucket in sorted(buckets):
        q = quantiles(buckets[bucket])
        out["t"].append(bucket * bucket_s)
        for key in ("p50_s", "p99_s", "max_s"):
            out[key].append(q[key])
    return out


def quantiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50_s": None, "p99_s": None, "max_s": max(values, default=None)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_s": cuts[49], "p99_s": cuts[98], "max_s": max(values)}
