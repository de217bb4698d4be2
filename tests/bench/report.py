"""Write a run's results: latest.json (everything), latest.md (the table), latest.png (chart),
and budget.png (the budget as a scheduled resource: the step phase over time, p99 vs bound)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt

from tests.bench.timeline import LIGHT_MARGIN_S, LIGHT_SLACK

# Mean body fill of the 10-cohort latency run with the sliding-window limiter alone (bench run of
# 2026-11-30, before pacing): issue 14 asks that pacing keeps fill at least this high
FILL_BEFORE_PACING = 0.0067

Check = tuple[str, str, Callable[[dict[str, Any]], Any], Callable[[Any], bool], str]

# (what, target, how to read it from the results, when it is met, format)
CHECKS: tuple[Check, ...] = (
    ("catch-up CPU, streamer process", "<= 5 CPU-s / M events",
     lambda r: r["catchup"]["cpu_s_per_million"], lambda v: v <= 5, "{:.2f} CPU-s / M"),
    ("consume-only floor (librdkafka + Message objects)", "(no target)",
     lambda r: r["catchup"]["floor_cpu_s_per_million"], lambda v: True, "{:.2f} CPU-s / M"),
    ("catch-up throughput, end to end", ">= 100,000 events/s",
     lambda r: r["catchup"]["events_per_s"], lambda v: v >= 100_000, "{:,.0f} events/s"),
    ("throughput vs baseline", ">= 50x",
     lambda r: r["ratios"]["throughput"], lambda v: v >= 50, "{:,.0f}x"),
    ("CPU per event vs baseline", "(no target)",
     lambda r: r["ratios"]["cpu_per_event"], lambda v: True, "{:,.0f}x less"),
    ("catch-up final state = expected", "yes",
     lambda r: r["catchup"]["final_state_ok"], bool, "{}"),
    ("requests vs lower bound (budget)", "<= 1.1x",
     lambda r: r["budget"]["requests_vs_lower_bound"], lambda v: v <= 1.1, "{:.3f}x"),
    ("mean body fill, full flushes", ">= 85%",
     lambda r: r["budget"]["mean_fill_full_flushes"], lambda v: v is not None and v >= 0.85,
     "{:.1%}"),
    ("429s received (budget)", "0",
     lambda r: r["budget"]["status_429"], lambda v: v == 0, "{}"),
    ("budget final state = expected", "yes",
     lambda r: r["budget"]["final_state_ok"], bool, "{}"),
    ("p99 latency above linger, light load (2 cohorts)", f"<= {LIGHT_MARGIN_S} s",
     lambda r: _latency_run(r, 2)["p99_s"] - _latency_run(r, 2)["linger_ms"] / 1000,
     lambda v: v <= LIGHT_MARGIN_S, "{:+.2f} s"),
    ("p99 latency vs the budget's bound, 10 cohorts", "<= 1.5x",
     lambda r: _latency_run(r, 10)["p99_vs_bound"], lambda v: v is not None and v <= 1.5,
     "{:.2f}x"),
    ("p99 latency vs the budget's bound, heavy (50 cohorts)", "<= 1.5x",
     lambda r: r["latency_heavy"]["p99_vs_bound"], lambda v: v is not None and v <= 1.5,
     "{:.2f}x"),
    ("mean body fill, 10 cohorts", f">= {FILL_BEFORE_PACING:.2%} (before pacing)",
     lambda r: _latency_run(r, 10)["mean_fill"],
     lambda v: v is not None and v >= FILL_BEFORE_PACING, "{:.2%}"),
    ("worst cohort p99 / median cohort p99, latency runs", "<= 2x",
     lambda r: max(x["cohort_p99_max_vs_median"] for x in _latency_runs(r)),
     lambda v: v <= 2, "{:.2f}x"),
    ("latency back to light level after the step down", "<= 2 windows",
     lambda r: r["step"]["recovered_after_windows"], lambda v: v is not None and v <= 2,
     "{:.2f} windows"),
    ("429s received (latency runs, step)", "0",
     lambda r: sum(x["status_429"] for x in _live_runs(r)), lambda v: v == 0, "{}"),
    ("events lost in latency runs, step", "0",
     lambda r: sum(x["lost"] for x in _live_runs(r)), lambda v: v == 0, "{}"),
    ("peak RSS (catch-up, budget)", "<= 300 MB",
     lambda r: max(r["catchup"]["peak_rss_mb"], r["budget"]["peak_rss_mb"]),
     lambda v: v <= 300, "{:.0f} MB"),
    ("CPU per cohort across cohort counts (max / min)", "<= 1.5x",
     lambda r: r["cohort_scaling"]["cpu_per_cohort_max_over_min"], lambda v: v <= 1.5,
     "{:.2f}x"),
    ("RSS after draining distinct cohorts, above a 1-cohort run", "<= 20 MB",
     lambda r: r["cohort_scaling"]["rss_after_drain_above_reference_mb"], lambda v: v <= 20,
     "{:+.1f} MB"),
    ("cohort scaling final state = expected", "yes",
     lambda r: r["cohort_scaling"]["final_state_ok"], bool, "{}"),
)  # fmt: skip


def _latency_run(r: dict[str, Any], cohorts: int) -> dict[str, Any]:
    for run in r["latency"]:
        if run["cohorts"] == cohorts:
            return run
    raise KeyError(f"no latency run at {cohorts} cohorts")


def _latency_runs(r: dict[str, Any]) -> list[dict[str, Any]]:
    """The latency phase's runs and the heavy one, whichever ran; KeyError if none did."""
    runs = [*r.get("latency", []), *([r["latency_heavy"]] if "latency_heavy" in r else [])]
    if not runs:
        raise KeyError("no latency run")
    return runs


def _live_runs(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run under live load: the latency runs and the step phase."""
    steps = [r["step"]] if "step" in r else []
    try:
        return [*_latency_runs(r), *steps]
    except KeyError:
        if steps:
            return steps
        raise


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for what, target, read, met, fmt in CHECKS:
        try:
            value = read(results)
        except (KeyError, IndexError, TypeError):
            continue  # that phase was not run
        shown = fmt.format(value) if value is not None else "n/a"
        rows.append({"what": what, "target": target, "value": value, "shown": shown,
                     "met": bool(met(value))})  # fmt: skip
    return rows


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results["checks"] = evaluate(results)
    (out / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "latest.md").write_text(markdown(results))
    chart(results, out / "latest.png")
    budget_chart(results, out / "budget.png")


def markdown(r: dict[str, Any]) -> str:
    env = r["environment"]
    lines = [
        "# Benchmark results (latest run)",
        "",
        f"`{env['command']}` on {env['started']}; {env['cpus']} CPUs, broker on the same "
        f"machine; load average at start {_load(env['load_average_start'])}, at end "
        f"{_load(env['load_average_end'])}. CPU seconds are the stable figure on this shared "
        "machine; wall-clock rates move with the load.",
        *_carried(env),
        "",
        "| measure | target | measured | met |",
        "|---|---|---|---|",
    ]
    for row in r["checks"]:
        lines.append(f"| {row['what']} | {row['target']} | {row['shown']} | "
                     f"{'yes' if row['met'] else '**no**'} |")  # fmt: skip
    lines += ["", *_details(r), ""]
    return "\n".join(lines)


def _carried(env: dict[str, Any]) -> list[str]:
    old = env.get("carried_over")
    if not old:
        return []
    return ["", f"Only some phases ran; {', '.join(old['phases'])} are from the earlier run "
                f"`{old['command']}` on {old['started']}."]  # fmt: skip


def _load(avg: list[float]) -> str:
    return " / ".join(f"{x:.2f}" for x in avg)


def _details(r: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "catchup" in r:
        c = r["catchup"]
        out += [
            "## Catch-up",
            f"{c['events']:,} events ({c['cohorts']} cohorts, {c['users']:,} users, "
            f"{c['partitions']} partitions), generated in {c['generate_seconds']:.1f} s, produced "
            f"in {c['produce_seconds']:.1f} s ({c['produce_events_per_s']:,.0f}/s). First fetch to "
            f"all committed: {c['seconds']:.2f} s, {c['cpu_seconds']:.2f} CPU-s in the streamer, "
            f"{c['requests']} requests {c['by_status']}, peak RSS {c['peak_rss_mb']:.0f} MB, "
            f"load average {_load(c['load_average']['before'])} -> "
            f"{_load(c['load_average']['after'])}. A bare consumer with the same settings reading "
            f"the same log costs {c['floor_cpu_s_per_million']:.2f} CPU-s per million events "
            f"({c['floor_events_per_s']:,.0f} events/s); the streamer's own work is the remaining "
            f"{c['above_floor_cpu_s_per_million']:.2f}.",
            "",
        ]
    if "baseline" in r:
        b = r["baseline"]
        out += [
            "## Baseline (one POST per event, commit after each)",
            f"{b['events']:,} events in {b['seconds']:.2f} s = {b['events_per_s']:,.0f} events/s, "
            f"{b['cpu_s_per_million']:,.0f} CPU-s per million events (its own process).",
            "",
        ]
    if "budget" in r:
        g = r["budget"]
        lb = g["lower_bound"]
        out += [
            f"## API budget ({g['budget']['requests']} requests / {g['budget']['window_s']:g} s)",
            f"{g['events']:,} events, {g['cohorts']} cohorts: {g['requests']} requests sent, lower "
            f"bound {lb['requests']} ({lb['net_adds']:,} net adds + {lb['net_removes']:,} net "
            f"removes, {lb['members_per_full_body']} members per full body). Mean fill "
            f"{_pct(g['mean_fill'])} over all requests, {_pct(g['mean_fill_full_flushes'])} over "
            f"the {g['full_flush_requests']} that are not a stream's final remainder. "
            f"Requests per tenth of the limit (0-10% ... 90-100%): {g['fill_histogram']}. "
            f"Statuses {g['by_status']}; most arrivals in one window "
            f"{g['max_arrivals_in_window']}. Drained in {g['seconds_to_drain']:.1f} s; peak RSS "
            f"{g['peak_rss_mb']:.0f} MB.",
            "",
        ]
    for lat in r.get("latency", []):
        out += _latency(lat)
    if "latency_heavy" in r:
        out += _latency(r["latency_heavy"])
    if "step" in r:
        out += _step(r["step"])
    if "cohort_scaling" in r:
        out += _scaling(r["cohort_scaling"])
    return out


def _latency(lat: dict[str, Any]) -> list[str]:
    worst = max(lat["per_cohort"].items(), key=lambda kv: kv[1]["p99_s"] or 0, default=(None, {}))
    return [
        f"## Latency, {lat['cohorts']} cohorts, {lat['rate']:g} events/s for "
        f"{lat['seconds']:g} s, linger {lat['linger_ms']} ms",
        f"{lat['acknowledged']:,} events acknowledged, {lat['lost']} lost; event ts -> "
        f"applied by the API (recorded in the emulator): p50 {_s(lat['p50_s'])}, p99 "
        f"{_s(lat['p99_s'])}, max {_s(lat['max_s'])}. The budget's bound for {lat['streams']} "
        f"(cohort, action) streams at {_budget_text(lat['budget'])}: {_s(lat['bound_s'])} "
        f"(streams x window / budget, at least linger), so p99 is {_x(lat['p99_vs_bound'])} "
        f"the bound. Worst cohort p99 {worst[0]}: {_s(worst[1].get('p99_s'))}, "
        f"{_x(lat['cohort_p99_max_vs_median'])} the median cohort's. {lat['requests']} "
        f"requests ({lat['requests_per_s']:.2f}/s, most in one window "
        f"{lat['max_arrivals_in_window']}), statuses {lat['by_status']}, mean fill "
        f"{_pct(lat['mean_fill'])}; streamer's own histogram puts p99 at <= "
        f"{lat['streamer_histogram_p99_bucket_s']} s.",
        "",
    ]


def _step(st: dict[str, Any]) -> list[str]:
    before, heavy, after = st["steps"]
    recovered = st["recovered_after_s"]
    if recovered is None:
        recovery = "had not recovered when the load ended"
    else:
        recovery = f"was back at that level {recovered:.0f} s after the step down"
    return [
        f"## Step: {before['cohorts']} cohorts for {before['seconds']:g} s, {heavy['cohorts']} "
        f"for {heavy['seconds']:g} s, {after['cohorts']} for {after['seconds']:g} s; linger "
        f"{st['linger_ms']} ms, {_budget_text(st['budget'])}",
        f"The heavy step's {st['heavy_streams']} streams want {st['heavy_demand_vs_budget']:.1f}x "
        f"the budget at linger (bound {_s(st['heavy_bound_s'])}). {st['acknowledged']:,} events "
        f"acknowledged, {st['lost']} lost; p50 {_s(st['p50_s'])}, p99 {_s(st['p99_s'])} overall. "
        f"The first light period's p99 is {_s(st['light_p99_s'])}, so the light level is "
        f"{_s(st['recovery_level_s'])} (linger + {LIGHT_MARGIN_S} s, or {LIGHT_SLACK:g}x that p99 "
        f"if larger); the p99 of every {st['bucket_s']:g} s bucket {recovery} "
        f"(step down at {st['step_down_s']:g} s). {st['requests']} requests, statuses "
        f"{st['by_status']}, most in one window {st['max_arrivals_in_window']}. Over time: "
        "budget.png.",
        "",
    ]


def _budget_text(b: dict[str, Any]) -> str:
    return f"{b['requests']} requests / {b['window_s']:g} s"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _scaling(c: dict[str, Any]) -> list[str]:
    ref = c["reference"]
    lines = [
        "## Cohort scaling (one event per distinct cohort, API unlimited)",
        "Per size one streamer: a first wave of distinct cohorts from first fetch to all "
        "committed, then 5 s idle (idle CPU), RSS, the cohorts it still tracks; then a second "
        "wave of as many new cohorts, and RSS again (reused memory stays flat, a leak adds).",
        "",
        "| cohorts | first fetch to committed | CPU-s | CPU-ms per cohort | peak RSS | "
        "RSS after drain | idle CPU after drain | cohorts tracked after | RSS after a 2nd wave |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in [ref, *c["runs"]]:
        tracked = run["cohorts_tracked_after_drain"]
        lines.append(
            f"| {run['cohorts']:,} | {run['seconds']:.1f} s | {run['cpu_seconds']:.2f} | "
            f"{run['cpu_s_per_cohort'] * 1000:.3f} | "
            f"{run['peak_rss_mb']:.0f} MB | {run['rss_after_drain_mb']:.0f} MB | "
            f"{run['idle_cpu_s_per_s_after_drain'] * 100:.1f}% | "
            f"{'n/a' if tracked is None else f'{tracked:.0f}'} | "
            f"{run['rss_after_second_drain_mb']:.0f} MB |"
        )
    return [*lines, ""]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f} s"


def chart(r: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    _throughput(axes[0][0], r.get("catchup"))
    _budget(axes[0][1], r.get("budget"))
    _latency_over_time(axes[1][0], _latency_runs(r) if "latency" in r else [])
    _memory(axes[1][1], r)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _rate(t: list[float], n: list[float]) -> tuple[list[float], list[float]]:
    """Per-interval rate of a cumulative count, over ~1 s steps."""
    xs, ys = [], []
    j = 0
    for i in range(1, len(t)):
        if t[i] - t[j] >= 1.0 or i == len(t) - 1:
            if t[i] > t[j]:
                xs.append(t[i])
                ys.append((n[i] - n[j]) / (t[i] - t[j]))
            j = i
    return xs, ys


def _throughput(ax: Any, c: dict[str, Any] | None) -> None:
    ax.set_title("catch-up: events/s (API unconstrained)")
    if not c:
        return
    s = c["series"]
    ax.plot(*_rate(s["t"], s["committed"]), label="committed")
    ax.plot(*_rate(s["consumed_t"], s["consumed"]), label="consumed")
    ax.axhline(100_000, color="grey", linestyle=":", label="target 100k/s")
    ax.set_xlabel("s since first fetch")
    ax.legend()


def _budget(ax: Any, g: dict[str, Any] | None) -> None:
    ax.set_title("budget: requests and committed events")
    if not g:
        return
    s = g["series"]
    ax.plot(s["request_t"], range(1, len(s["request_t"]) + 1), label="requests accepted")
    ax.axhline(g["lower_bound"]["requests"], color="grey", linestyle=":", label="lower bound")
    ax.set_xlabel("s")
    ax.set_ylabel("requests")
    ax.legend(loc="upper left")
    twin = ax.twinx()
    twin.plot(s["t"], s["committed"], color="tab:green", label="committed events")
    twin.set_ylabel("events committed")


def _latency_over_time(ax: Any, runs: list[dict[str, Any]]) -> None:
    ax.set_title("latency: event ts -> applied by the API (per second of load)")
    for lat in runs:
        s = lat["series"]
        ax.plot(s["t"], s["p50_s"], label=f"{lat['cohorts']} cohorts p50")
        ax.plot(s["t"], s["p99_s"], linestyle="--", label=f"{lat['cohorts']} cohorts p99")
    if runs:
        light = runs[0]["linger_ms"] / 1000 + LIGHT_MARGIN_S
        ax.axhline(light, color="grey", linestyle=":", label="target p99 (light load)")
    ax.set_yscale("log")
    ax.set_xlabel("s since load started")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)


def _memory(ax: Any, r: dict[str, Any]) -> None:
    ax.set_title("streamer RSS")
    for name in ("catchup", "budget"):
        if name in r:
            ax.plot(r[name]["series"]["t"], r[name]["series"]["rss_mb"], label=name)
    ax.axhline(300, color="grey", linestyle=":", label="target 300 MB")
    ax.set_xlabel("s since first fetch")
    ax.set_ylabel("MB")
    ax.legend()


def budget_chart(r: dict[str, Any], path: Path) -> None:
    """The step phase's latency and budget use over time, and each latency run against its
    bound: the picture of the budget as a scheduled resource."""
    fig, axes = plt.subplots(3, 1, figsize=(11, 11))
    _step_latency(axes[0], r.get("step"))
    _step_budget(axes[1], r.get("step"))
    try:
        runs = _latency_runs(r)
    except KeyError:
        runs = []
    _against_bound(axes[2], runs)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _step_periods(ax: Any, st: dict[str, Any]) -> None:
    """Shade the heavy step; mark the step down plus two windows (the recovery target)."""
    up = st["steps"][0]["seconds"]
    down = st["step_down_s"]
    ax.axvspan(up, down, color="tab:orange", alpha=0.08, label="heavy step")
    limit = down + 2 * st["budget"]["window_s"]
    ax.axvline(limit, color="tab:red", linestyle=":", label="step down + 2 windows")


def _step_latency(ax: Any, st: dict[str, Any] | None) -> None:
    ax.set_title("step: latency of the events produced in each bucket")
    if not st:
        return
    s = st["latency_series"]
    ax.plot(s["t"], s["p50_s"], label="p50")
    ax.plot(s["t"], s["p99_s"], label="p99")
    ax.axhline(st["recovery_level_s"], color="grey", linestyle=":", label="light level")
    ax.axhline(st["heavy_bound_s"], color="black", linestyle="--", label="bound, heavy step")
    _step_periods(ax, st)
    ax.set_yscale("log")
    ax.set_xlabel("s since the load started (event produced)")
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)


def _step_budget(ax: Any, st: dict[str, Any] | None) -> None:
    ax.set_title("step: budget use (requests accepted per second)")
    if not st:
        return
    s = st["budget_series"]
    ax.step(s["t"], s["requests_per_s"], where="post", label="requests accepted/s")
    ax.axhline(st["budget_per_s"], color="black", linestyle="--", label="budget/s")
    if any(s["status_429"]):
        ax.bar(s["t"], s["status_429"], width=st["bucket_s"], align="edge", color="tab:red",
               alpha=0.5, label="429s in the bucket")  # fmt: skip
    _step_periods(ax, st)
    ax.set_xlabel("s since the load started (request answered)")
    ax.set_ylabel("requests/s")
    ax.legend(fontsize=8)


def _against_bound(ax: Any, runs: list[dict[str, Any]]) -> None:
    ax.set_title("latency runs: p99 against the bound the budget allows (target <= 1.5x)")
    if not runs:
        return
    labels = [f"{x['cohorts']} cohorts, {x['rate']:g}/s" for x in runs]
    at = range(len(runs))
    ax.bar([i - 0.2 for i in at], [x["p99_s"] or 0 for x in runs], width=0.4, label="p99")
    ax.bar([i + 0.2 for i in at], [x["bound_s"] for x in runs], width=0.4, label="bound")
    for i, x in enumerate(runs):
        ax.annotate(_x(x["p99_vs_bound"]), (i - 0.2, x["p99_s"] or 0), ha="center",
                    va="bottom")  # fmt: skip
    ax.set_xticks(list(at), labels)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
