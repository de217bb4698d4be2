"""The benchmark's phases; each returns a JSON-ready dict (the report reads nothing else).

1 catch-up   a large backlog, API unconstrained: events/s and streamer CPU-s per million events
2 baseline   the afternoon script on a slice of the same log, in its own process
3 budget     a backlog under the real 300/min budget: requests against the lower bound, fill, 429s
4 latency    live load at a light and at a budget-limited cohort count: event ts -> API applied,
             against the bound the budget allows (streams x window / budget, at least linger)
  latency_heavy  the same at 50 cohorts and 1,000 events/s
  step       light load, then ~10x the budget, then light again: latency and budget use over
             time, and how soon latency is back to light-load level after the step down
5 cohort scaling  one event per distinct cohort (1,000 / 10,000 / 50,000), API unlimited: CPU-s
             per cohort, and RSS and idle CPU once drained against a 1-cohort run
Peak RSS of the streamer is sampled in 1, 3 and 5.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import rig, timeline
from tests.bench.live import LiveEvent, LiveLoad, Step, acknowledged, latency_summary, streams
from tests.bench.workload import Backlog, generate_backlog, lower_bound, produce
from tests.fixtures.observe import http_get, samples, wait_for

SECONDS_PER_MINUTE = 60.0


@dataclass
class Sizes:
    """Every size and duration of a run; `smoke()` shrinks them to seconds."""

    partitions: int = 12
    catchup_events: int = 2_000_000
    catchup_cohorts: int = 50
    catchup_users: int = 500_000
    baseline_events: int = 5_000
    budget_events: int = 1_000_000
    budget_cohorts: int = 50
    budget_users: int = 500_000
    budget_per_window: int = 300
    budget_window_s: float = 60.0
    latency_rate: float = 200.0
    latency_seconds: float = 60.0
    latency_cohorts: tuple[int, ...] = (2, 10)
    heavy_cohorts: int = 50
    heavy_rate: float = 1000.0
    heavy_seconds: float = 90.0
    # step: light (2 cohorts at latency_rate), then enough streams that their demand at linger
    # is ~10x the budget (25 cohorts x 2 actions / 1 s = 50 requests/s against 5), then light
    step_light_cohorts: int = 2
    step_heavy_cohorts: int = 25
    step_heavy_rate: float = 1000.0
    step_before_seconds: float = 60.0
    step_heavy_seconds: float = 120.0
    step_after_seconds: float = 120.0
    step_bucket_s: float = 5.0
    scaling_cohorts: tuple[int, ...] = (1_000, 10_000, 50_000)
    linger_ms: int = 1000
    timeout_s: float = 1800.0

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            partitions=6,
            catchup_events=20_000,
            catchup_cohorts=10,
            catchup_users=5_000,
            baseline_events=200,
            budget_events=20_000,
            budget_cohorts=3,
            budget_users=50_000,
            budget_per_window=10,
            budget_window_s=2.0,
            latency_rate=100.0,
            latency_seconds=3.0,
            heavy_cohorts=5,
            heavy_rate=200.0,
            heavy_seconds=3.0,
            step_heavy_cohorts=5,
            step_heavy_rate=200.0,
            step_before_seconds=2.0,
            step_heavy_seconds=3.0,
            step_after_seconds=4.0,
            step_bucket_s=0.5,
            scaling_cohorts=(20, 200),
            timeout_s=120.0,
        )


@dataclass
class Context:
    broker: rig.Broker
    workdir: Path
    sizes: Sizes
    profile: str | None = None  # py-spy output path for the catch-up streamer
    # streamer config applied over every phase's own, e.g. {"batching": {"linger_ms": 500}}
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)


def _group() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}"


def _produce_backlog(ctx: Context, name: str, backlog: Backlog) -> tuple[str, dict[str, float]]:
    topic = ctx.broker.topic(name, ctx.sizes.partitions)
    started = time.monotonic()
    produce(ctx.broker.bootstrap, topic, backlog.messages())
    seconds = time.monotonic() - started
    return topic, {"produce_seconds": seconds, "produce_events_per_s": len(backlog) / seconds}


def generate(events: int, cohorts: int, users: int, seed: int) -> tuple[Backlog, float]:
    started = time.monotonic()
    backlog = generate_backlog(events, cohorts, users, seed=seed)
    return backlog, time.monotonic() - started


def _wait_first_fetch(streamer: rig.Streamer, timeout: float) -> tuple[float, float]:
    """(time, CPU) of the last look *before* the first consumed batch: conservative start."""
    deadline = time.monotonic() + timeout
    before = (time.monotonic(), streamer.cpu_seconds())
    while time.monotonic() < deadline:
        try:
            if streamer.consumed() > 0:
                return before
        except OSError:
            pass  # /metrics not up yet
        before = (time.monotonic(), streamer.cpu_seconds())
        time.sleep(0.05)
    raise TimeoutError(f"the streamer consumed nothing in {timeout:.0f}s:\n{streamer.log_tail()}")


def _drain(
    streamer: rig.Streamer, probe: rig.CommitProbe, total: int, timeout: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """Poll until the group committed `total`; (end time, end CPU, consumed-over-time)."""
    deadline = time.monotonic() + timeout
    consumed: list[tuple[float, float]] = []
    next_scrape = 0.0
    while probe.committed() < total:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"not caught up after {timeout:.0f}s:\n{streamer.log_tail()}")
        if now >= next_scrape:  # 1/s: /metrics costs the streamer CPU too
            consumed.append((now, streamer.consumed()))
            next_scrape = now + 1.0
        time.sleep(0.1)
    return time.monotonic(), streamer.cpu_seconds(), consumed


def _start_streamer(
    ctx: Context, name: str, topic: str, emulator: rig.Emulator, group: str, **sections: Any
) -> rig.Streamer:
    dlq = ctx.broker.topic(f"{name}-dlq", 1)
    settings = rig.streamer_settings(
        ctx.broker.bootstrap, topic, dlq, group, emulator.url, **sections
    )
    for section, values in ctx.overrides.items():
        settings.setdefault(section, {}).update(values)
    profile = ctx.profile if name == "catchup" else None
    return rig.Streamer(ctx.workdir, name, settings, profile)


def catchup(ctx: Context) -> tuple[dict[str, Any], Backlog]:
    s = ctx.sizes
    backlog, gen_s = generate(s.catchup_events, s.catchup_cohorts, s.catchup_users, seed=7)
    topic, produced = _produce_backlog(ctx, "catchup", backlog)
    emulator = rig.Emulator(ctx.workdir / "emulator-catchup.log", rig.UNLIMITED_PER_MINUTE)
    group = _group()
    streamer: rig.Streamer | None = None
    try:
        moengage = {"rate_limit_per_minute": rig.UNLIMITED_PER_MINUTE}
        streamer = _start_streamer(ctx, "catchup", topic, emulator, group, moengage=moengage)
        probe = rig.CommitProbe(ctx.broker.bootstrap, group, topic)
        observer = rig.Observer(streamer, probe).start()
        load_before = rig.load_average()
        t0, cpu0 = _wait_first_fetch(streamer, 120)
        threads0 = streamer.cpu_by_thread()
        t1, cpu1, consumed = _drain(streamer, probe, len(backlog), s.timeout_s)
        threads1 = streamer.cpu_by_thread()
        observer.stop()
        load_after = rig.load_average()
        mismatches = emulator.mismatches(backlog.expected)
        stats = emulator.stats()
        exit_code = streamer.terminate()
        probe.close()
    finally:
        if streamer is not None:
            streamer.close()
        emulator.stop()
    # after the streamer has exited, so the two never share the CPU
    floor = _floor(ctx, streamer.config, len(backlog))
    seconds, cpu = t1 - t0, cpu1 - cpu0
    cpu_s_per_million = cpu / len(backlog) * 1e6
    return {
        "events": len(backlog),
        "cohorts": s.catchup_cohorts,
        "users": s.catchup_users,
        "partitions": s.partitions,
        "generate_seconds": gen_s,
        **produced,
        "seconds": seconds,
        "events_per_s": len(backlog) / seconds,
        "cpu_seconds": cpu,
        "cpu_s_per_million": cpu_s_per_million,
        **floor,
        "above_floor_cpu_s_per_million": cpu_s_per_million - floor["floor_cpu_s_per_million"],
        "cpu_seconds_by_thread": {
            name: round(cpu - threads0.get(name, 0.0), 2) for name, cpu in threads1.items()
        },
        "peak_rss_mb": observer.peak_rss_mb,
        "requests": stats["requests_total"],
        "by_status": stats["by_status"],
        "max_body_bytes": stats["max_body_bytes"],
        "final_state_ok": not mismatches,
        "mismatched_cohorts": mismatches,
        "exit_code": exit_code,
        "load_average": {"before": load_before, "after": load_after},
        "series": _series(observer, t0, consumed),
    }, backlog


def _floor(ctx: Context, config: Path, events: int) -> dict[str, float]:
    """A bare consumer (tests/bench/floor.py) with the streamer's settings on the same log."""
    cmd = [
        sys.executable, "-m", "tests.bench.floor", "--config", str(config), "--group", _group(),
        "--events", str(events), "--timeout", str(ctx.sizes.timeout_s),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=rig.REPO, capture_output=True, text=True, timeout=ctx.sizes.timeout_s + 60
    )
    if done.returncode != 0:
        raise RuntimeError(f"consume-only floor failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "floor_seconds": result["seconds"],
        "floor_cpu_seconds": result["cpu_seconds"],
        "floor_events_per_s": result["events"] / result["seconds"],
        "floor_cpu_s_per_million": result["cpu_seconds"] / result["events"] * 1e6,
    }


def _series(
    observer: rig.Observer, t0: float, consumed: list[tuple[float, float]]
) -> dict[str, list[float]]:
    return {
        "t": [round(x.t - t0, 2) for x in observer.samples],
        "committed": [x.committed for x in observer.samples],
        "rss_mb": [round(x.rss_mb, 1) for x in observer.samples],
        "cpu_s": [round(x.cpu_s, 2) for x in observer.samples],
        "consumed_t": [round(t - t0, 2) for t, _ in consumed],
        "consumed": [c for _, c in consumed],
    }


def baseline(ctx: Context, backlog: Backlog) -> dict[str, Any]:
    """The afternoon script on the first events of the catch-up log, scaled per event."""
    n = min(ctx.sizes.baseline_events, len(backlog))
    topic = ctx.broker.topic("baseline", ctx.sizes.partitions)
    produce(ctx.broker.bootstrap, topic, backlog.messages(0, n))
    emulator = rig.Emulator(ctx.workdir / "emulator-baseline.log", rig.UNLIMITED_PER_MINUTE)
    try:
        cmd = [
            sys.executable, "-m", "tests.bench.baseline", "--bootstrap", ctx.broker.bootstrap,
            "--topic", topic, "--group", _group(), "--url", emulator.url,
            "--workspace-id", rig.WORKSPACE_ID, "--api-key", rig.API_KEY, "--events", str(n),
        ]  # fmt: skip
        load_before = rig.load_average()
        done = subprocess.run(
            cmd, cwd=rig.REPO, capture_output=True, text=True, timeout=ctx.sizes.timeout_s
        )
        if done.returncode != 0:
            raise RuntimeError(f"baseline failed: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        stats = emulator.stats()
    finally:
        emulator.stop()
    result.update(
        events_per_s=result["events"] / result["seconds"],
        cpu_s_per_million=result["cpu_seconds"] / result["events"] * 1e6,
        accepted=stats["by_status"].get("200", 0),
        load_average=load_before,
    )
    return result


def budget(ctx: Context) -> dict[str, Any]:
    """A backlog drained under the real budget: every request must count."""
    s = ctx.sizes
    backlog, _ = generate(s.budget_events, s.budget_cohorts, s.budget_users, seed=23)
    bound = lower_bound(backlog, rig.PARTNER)
    topic, _ = _produce_backlog(ctx, "budget", backlog)
    emulator = rig.Emulator(
        ctx.workdir / "emulator-budget.log", s.budget_per_window, s.budget_window_s
    )
    group = _group()
    streamer: rig.Streamer | None = None
    try:
        moengage = {
            "rate_limit_per_minute": s.budget_per_window,
            "rate_window_seconds": s.budget_window_s,
        }
        streamer = _start_streamer(ctx, "budget", topic, emulator, group, moengage=moengage)
        probe = rig.CommitProbe(ctx.broker.bootstrap, group, topic)
        observer = rig.Observer(streamer, probe, interval=0.2).start()
        t0, cpu0 = _wait_first_fetch(streamer, 120)
        t1, cpu1, _ = _drain(streamer, probe, len(backlog), s.timeout_s)
        observer.stop()
        mismatches = emulator.mismatches(backlog.expected)
        stats = emulator.stats()
        accepted = emulator.requests()
        exit_code = streamer.terminate()
        probe.close()
    finally:
        if streamer is not None:
            streamer.close()
        emulator.stop()
    sent = stats["requests_total"]
    t_first = accepted[0]["t"] if accepted else 0.0
    return {
        "events": len(backlog),
        "cohorts": s.budget_cohorts,
        "budget": _budget_settings(s),
        "lower_bound": bound,
        "requests": sent,
        "requests_vs_lower_bound": sent / bound["requests"],
        "by_status": stats["by_status"],
        "status_429": stats["by_status"].get("429", 0),
        "max_arrivals_in_window": stats["max_arrivals_in_window"],
        "max_body_bytes": stats["max_body_bytes"],
        **_fill(accepted),
        "seconds_to_drain": t1 - t0,
        "cpu_seconds": cpu1 - cpu0,
        "peak_rss_mb": observer.peak_rss_mb,
        "final_state_ok": not mismatches,
        "mismatched_cohorts": mismatches,
        "exit_code": exit_code,
        "series": {
            "t": [round(x.t - t0, 2) for x in observer.samples],
            "committed": [x.committed for x in observer.samples],
            "rss_mb": [round(x.rss_mb, 1) for x in observer.samples],
            "request_t": [round(r["t"] - t_first, 2) for r in accepted],
        },
    }


def _budget_settings(s: Sizes) -> dict[str, Any]:
    per_minute = round(s.budget_per_window * SECONDS_PER_MINUTE / s.budget_window_s)
    return {
        "requests": s.budget_per_window,
        "window_s": s.budget_window_s,
        "per_minute": per_minute,
    }


def _fill(accepted: list[dict[str, Any]]) -> dict[str, Any]:
    """Body fill: over all accepted requests, and over all but each stream's final request.

    A (cohort, action) stream's last request carries whatever is left over; the lower bound
    pays for that remainder too (its ceil), so the fill of the others is the packing quality.
    """
    limit = 128_000
    if not accepted:
        return {"mean_fill": None, "mean_fill_full_flushes": None, "full_flush_requests": 0}
    last: dict[tuple[str, str], int] = {}
    for i, r in enumerate(accepted):
        last[(r["cohort"], r["action"])] = i
    finals = set(last.values())
    full = [r["bytes"] for i, r in enumerate(accepted) if i not in finals]
    return {
        "mean_fill": sum(r["bytes"] for r in accepted) / len(accepted) / limit,
        "mean_fill_full_flushes": sum(full) / len(full) / limit if full else None,
        "full_flush_requests": len(full),
        "requests_at_least_95pct": sum(1 for r in accepted if r["bytes"] >= 0.95 * limit),
        # requests per tenth of the limit: [0-10%), [10-20%), ... [90-100%]
        "fill_histogram": _tenths(accepted, limit),
        "fill_histogram_by_action": {
            action: _tenths([r for r in accepted if r["action"] == action], limit)
            for action in ("add_members", "remove_members")
        },
    }


def _tenths(accepted: list[dict[str, Any]], limit: int) -> list[int]:
    tenths = [0] * 10
    for r in accepted:
        tenths[min(9, int(10 * r["bytes"] / limit))] += 1
    return tenths


@dataclass
class LiveRun:
    """What a live load left behind: its events and what the emulator and streamer saw."""

    events: list[LiveEvent]
    acks: dict[str, float]
    accepted: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    stats: dict[str, Any]
    drain_s: float
    histogram_p99_bucket_s: float | None
    exit_code: int


def _live(ctx: Context, name: str, steps: list[Step]) -> LiveRun:
    """One streamer under the real budget while `steps` of live load are produced; drained."""
    s = ctx.sizes
    topic = ctx.broker.topic(name, s.partitions)
    emulator = rig.Emulator(
        ctx.workdir / f"emulator-{name}.log",
        s.budget_per_window, s.budget_window_s, record_uids=True,
    )  # fmt: skip
    group = _group()
    streamer: rig.Streamer | None = None
    try:
        streamer = _start_streamer(
            ctx, name, topic, emulator, group,
            moengage={"rate_limit_per_minute": s.budget_per_window,
                      "rate_window_seconds": s.budget_window_s},
            batching={"linger_ms": s.linger_ms},
        )  # fmt: skip
        probe = rig.CommitProbe(ctx.broker.bootstrap, group, topic)
        wait_for(lambda: http_get(streamer.port, "/readyz")[0] == 200, 60, "readiness", 0.1)
        load = LiveLoad(ctx.broker.bootstrap, topic)
        load.run(steps)
        started = time.monotonic()
        wait_for(lambda: probe.committed() >= load.produced, s.timeout_s, "drain")
        run = LiveRun(
            events=load.events,
            acks=emulator.acks(),
            accepted=emulator.requests(),
            refused=emulator.refused(),
            stats=emulator.stats(),
            drain_s=time.monotonic() - started,
            histogram_p99_bucket_s=_histogram_quantile(streamer, 0.99),
            exit_code=streamer.terminate(),
        )
        probe.close()
    finally:
        if streamer is not None:
            streamer.close()
        emulator.stop()
    return run


def latency_bound(s: Sizes, stream_count: int) -> float:
    """The p99 the budget allows: each stream sent once per its turn (streams x window /
    budget), and never sooner than linger makes it due."""
    return max(s.linger_ms / 1000, stream_count * s.budget_window_s / s.budget_per_window)


def latency(ctx: Context, name: str, cohorts: int, rate: float, seconds: float) -> dict[str, Any]:
    """Live events at `rate`/s over `cohorts` cohorts; event ts -> applied by the API."""
    s = ctx.sizes
    run = _live(ctx, name, [Step(seconds, cohorts, rate)])
    summary = latency_summary(run.events, run.acks)
    stream_count = streams(run.events)
    bound = latency_bound(s, stream_count)
    p99 = summary["p99_s"]
    return {
        "cohorts": cohorts,
        "rate": rate,
        "seconds": seconds,
        "linger_ms": s.linger_ms,
        "budget": _budget_settings(s),
        "events": len(run.events),
        "streams": stream_count,
        "bound_s": bound,
        "p99_vs_bound": p99 / bound if p99 is not None else None,
        "requests": run.stats["requests_total"],
        "requests_per_s": run.stats["requests_total"] / (seconds + run.drain_s),
        "by_status": run.stats["by_status"],
        "status_429": run.stats["by_status"].get("429", 0),
        "max_arrivals_in_window": run.stats["max_arrivals_in_window"],
        **_fill(run.accepted),
        "drain_after_load_s": run.drain_s,
        "streamer_histogram_p99_bucket_s": run.histogram_p99_bucket_s,
        "exit_code": run.exit_code,
        **summary,
    }


def step(ctx: Context) -> dict[str, Any]:
    """Light load, ~10x the budget, light again: does latency come back within two windows?"""
    s = ctx.sizes
    steps = [
        Step(s.step_before_seconds, s.step_light_cohorts, s.latency_rate),
        Step(s.step_heavy_seconds, s.step_heavy_cohorts, s.step_heavy_rate),
        Step(s.step_after_seconds, s.step_light_cohorts, s.latency_rate),
    ]
    run = _live(ctx, "step", steps)
    summary = latency_summary(run.events, run.acks, s.step_bucket_s)
    start = run.events[0].ts_ms / 1000
    return {
        "steps": [vars(x) for x in steps],
        "linger_ms": s.linger_ms,
        "budget": _budget_settings(s),
        "budget_per_s": s.budget_per_window / s.budget_window_s,
        "bucket_s": s.step_bucket_s,
        "events": len(run.events),
        **{k: summary[k] for k in ("acknowledged", "lost", "p50_s", "p99_s")},
        "requests": run.stats["requests_total"],
        "by_status": run.stats["by_status"],
        "status_429": run.stats["by_status"].get("429", 0),
        "max_arrivals_in_window": run.stats["max_arrivals_in_window"],
        **_heavy_demand(s, run.events, start),
        **_recovery(s, run, summary["series"], start),
        "drain_after_load_s": run.drain_s,
        "exit_code": run.exit_code,
        "latency_series": summary["series"],
        "budget_series": timeline.budget_use(run.accepted, run.refused, start, s.step_bucket_s),
    }


def _heavy_demand(s: Sizes, events: list[LiveEvent], start: float) -> dict[str, Any]:
    """The heavy step's streams, the requests they want at linger against the budget, and
    the latency bound the budget allows them."""
    heavy_end = s.step_before_seconds + s.step_heavy_seconds
    count = streams(
        [e for e in events if s.step_before_seconds <= e.ts_ms / 1000 - start < heavy_end]
    )
    wanted_per_s = count / (s.linger_ms / 1000)
    return {
        "heavy_streams": count,
        "heavy_demand_vs_budget": wanted_per_s / (s.budget_per_window / s.budget_window_s),
        "heavy_bound_s": latency_bound(s, count),
    }


def _recovery(
    s: Sizes, run: LiveRun, series: dict[str, list[float | None]], start: float
) -> dict[str, Any]:
    """How soon after the step down every bucket's p99 is back at light-load level."""
    done, _ = acknowledged(run.events, run.acks)
    light_p99, level = timeline.light_level(done, start, s.step_before_seconds, s.linger_ms / 1000)
    step_down_s = s.step_before_seconds + s.step_heavy_seconds
    recovered = timeline.recovered_after(series, step_down_s, level, s.step_bucket_s)
    return {
        "light_p99_s": light_p99,
        "recovery_level_s": level,
        "step_down_s": step_down_s,
        "recovered_after_s": recovered,
        "recovered_after_windows": None if recovered is None else recovered / s.budget_window_s,
    }


def _histogram_quantile(streamer: rig.Streamer, q: float) -> float | None:
    """The upper bound of the ack-latency histogram bucket holding quantile q (a cross-check)."""
    name = "cohort_streamer_event_ack_latency_seconds_bucket"
    buckets = [(float(labels["le"]), count) for labels, count in samples(streamer.port, name)]
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(le for le, count in buckets if count >= q * total)


IDLE_SECONDS = 5.0  # after a drain: how long idle CPU is measured before RSS is read
BUFFERED_COHORTS = "cohort_streamer_buffered_cohorts"


def cohort_scaling(ctx: Context) -> dict[str, Any]:
    """One event per distinct cohort id at each size, and one event to one cohort as the
    reference: the streamer's cost must follow the cohorts with work, and a drained streamer
    must hold no more than one that only ever saw one cohort."""
    reference = _scaling_run(ctx, 1)
    runs = [_scaling_run(ctx, n) for n in ctx.sizes.scaling_cohorts]
    per_cohort = [r["cpu_s_per_cohort"] for r in runs]
    rss_after = max(r["rss_after_drain_mb"] for r in runs)
    return {
        "reference": reference,
        "runs": runs,
        "cpu_per_cohort_max_over_min": max(per_cohort) / min(per_cohort),
        "rss_after_drain_above_reference_mb": rss_after - reference["rss_after_drain_mb"],
        "final_state_ok": all(r["final_state_ok"] for r in [reference, *runs]),
    }


def _scaling_run(ctx: Context, cohorts: int) -> dict[str, Any]:
    """Two waves of `cohorts` new cohorts into one streamer: the first is measured; after the
    second, RSS shows whether what the first left is reused (allocator) or added to (a leak)."""
    s = ctx.sizes
    topic = ctx.broker.topic(f"scaling{cohorts}", s.partitions)
    expected = _wave(ctx, topic, range(cohorts))
    emulator = rig.Emulator(
        ctx.workdir / f"emulator-scaling{cohorts}.log", rig.UNLIMITED_PER_MINUTE
    )
    group = _group()
    streamer: rig.Streamer | None = None
    try:
        # the limiter remembers each request for one window: memory that follows the budget
        # (unlimited here), not the cohorts; a 1 s window keeps it out of the RSS after drain
        moengage = {"rate_limit_per_minute": rig.UNLIMITED_PER_MINUTE, "rate_window_seconds": 1}
        name = f"scaling{cohorts}"
        streamer = _start_streamer(ctx, name, topic, emulator, group, moengage=moengage)
        probe = rig.CommitProbe(ctx.broker.bootstrap, group, topic)
        observer = rig.Observer(streamer, probe).start()
        t0, cpu0 = _wait_first_fetch(streamer, 120)
        t1, cpu1, _ = _drain(streamer, probe, cohorts, s.timeout_s)
        observer.stop()
        after = _after_drain(streamer, observer)
        expected |= _wave(ctx, topic, range(cohorts, 2 * cohorts))
        _drain(streamer, probe, 2 * cohorts, s.timeout_s)
        second = _after_drain(streamer, observer)
        stats = emulator.stats()
        state_ok = _state_ok(emulator, expected)
        exit_code = streamer.terminate()
        probe.close()
    finally:
        if streamer is not None:
            streamer.close()
        emulator.stop()
    cpu = cpu1 - cpu0
    return {
        "cohorts": cohorts,
        "seconds": t1 - t0,
        "cpu_seconds": cpu,
        "cpu_s_per_cohort": cpu / cohorts,
        "requests": stats["requests_total"],  # both waves
        "by_status": stats["by_status"],
        "peak_rss_mb": observer.peak_rss_mb,
        **after,
        "rss_after_second_drain_mb": second["rss_after_drain_mb"],
        "final_state_ok": state_ok,
        "exit_code": exit_code,
    }


def _wave(ctx: Context, topic: str, ids: range) -> dict[str, str]:
    """One enter per new cohort; returns cohort -> its member."""
    wave = {f"cohort-{i:06d}": f"user-{i:06d}" for i in ids}
    produce(ctx.broker.bootstrap, topic, ((u.encode(), _enter(c, u)) for c, u in wave.items()))
    return wave


def _enter(cohort: str, uid: str) -> bytes:
    return b'{"action":"enter","cohort_id":"%s","uid":"%s"}' % (cohort.encode(), uid.encode())


def _after_drain(streamer: rig.Streamer, observer: rig.Observer) -> dict[str, Any]:
    """Once every buffer is empty: idle CPU over IDLE_SECONDS, then RSS and cohorts tracked."""
    wait_for(lambda: streamer.metric(BUFFERED_COHORTS) == 0, 60, "empty buffers", 0.1)
    started, cpu = time.monotonic(), streamer.cpu_seconds()
    time.sleep(IDLE_SECONDS)
    idle = (streamer.cpu_seconds() - cpu) / (time.monotonic() - started)
    return {
        "idle_cpu_s_per_s_after_drain": idle,
        "rss_after_drain_mb": observer.sample().rss_mb,
        "cohorts_tracked_after_drain": streamer.gauge("cohort_streamer_cohorts_tracked"),
    }


def _state_ok(emulator: rig.Emulator, expected: dict[str, str]) -> bool:
    """Every cohort holds one member; a spread sample of them holds exactly its own."""
    cohorts = emulator.get("/_emulator/cohorts")["cohorts"]
    if {c: d["member_count"] for c, d in cohorts.items()} != dict.fromkeys(expected, 1):
        return False
    ids = sorted(expected)
    sample = ids[:: max(1, len(ids) // 50)]
    return all(emulator.members(c) == {expected[c]} for c in sample)
