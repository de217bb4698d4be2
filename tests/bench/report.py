"""Write a run's results: latest.json (everything), latest.md (the table), latest.png (chart)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt

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
    ("p99 latency, light load (2 cohorts)", "<= 2.5 s",
     lambda r: r["latency"][0]["p99_s"], lambda v: v is not None and v <= 2.5, "{:.2f} s"),
    ("events lost in latency runs", "0",
     lambda r: sum(x["lost"] for x in r["latency"]), lambda v: v == 0, "{}"),
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
        worst = max(
            lat["per_cohort"].items(), key=lambda kv: kv[1]["p99_s"] or 0, default=(None, {})
        )
        out += [
            f"## Latency, {lat['cohorts']} cohorts, {lat['rate']:g} events/s for "
            f"{lat['seconds']:g} s, linger {lat['linger_ms']} ms",
            f"{lat['acknowledged']:,} events acknowledged, {lat['lost']} lost; event ts -> "
            f"applied by the API (recorded in the emulator): p50 {_s(lat['p50_s'])}, p99 "
            f"{_s(lat['p99_s'])}, max {_s(lat['max_s'])}. Worst cohort p99 {worst[0]}: "
            f"{_s(worst[1].get('p99_s'))}. {lat['requests']} requests "
            f"({lat['requests_per_s']:.2f}/s), statuses {lat['by_status']}; streamer's own "
            f"histogram puts p99 at <= {lat['streamer_histogram_p99_bucket_s']} s.",
            "",
        ]
    if "cohort_scaling" in r:
        out += _scaling(r["cohort_scaling"])
    return out


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
    _latency(axes[1][0], r.get("latency", []))
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


def _latency(ax: Any, runs: list[dict[str, Any]]) -> None:
    ax.set_title("latency: event ts -> applied by the API (per second of load)")
    for lat in runs:
        s = lat["series"]
        ax.plot(s["t"], s["p50_s"], label=f"{lat['cohorts']} cohorts p50")
        ax.plot(s["t"], s["p99_s"], linestyle="--", label=f"{lat['cohorts']} cohorts p99")
    ax.axhline(2.5, color="grey", linestyle=":", label="target p99 (light load)")
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
