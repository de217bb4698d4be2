"""`python -m tests.bench.run` (`make bench`): run the benchmark and write tests/bench/results/.

    python -m tests.bench.run                         # the full run of issue 7 (many minutes)
    python -m tests.bench.run --smoke --out /tmp/b    # seconds; what tests/test_bench_smoke.py runs
    python -m tests.bench.run --phases catchup --catchup-events 500000 --profile /tmp/p.json
    python -m tests.bench.run --phases cohort_scaling --scaling-cohorts 1000,10000

Without --bootstrap a throwaway local Kafka is started (throughput JVM settings) and stopped.
Any size can be overridden (see --help); --phases picks a subset. A subset run keeps the other
phases' figures of the previous run in latest.* (the environment says which run they are from).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.bench import phases, report, rig

RESULTS = Path(__file__).resolve().parent / "results"
PHASES = ("catchup", "baseline", "budget", "latency", "latency_heavy", "step", "cohort_scaling")
COUNTS = ("latency_cohorts", "scaling_cohorts")  # sizes given as comma-separated lists


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds per phase")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument("--bootstrap", help="use this Kafka instead of starting one")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.* go")
    parser.add_argument("--workdir", type=Path, help="logs and configs (default: a temp dir)")
    parser.add_argument("--profile", help="run the catch-up streamer under py-spy; output path")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="streamer config for every phase, e.g. batching.linger_ms=500 (YAML value)",
    )
    for f in dataclasses.fields(phases.Sizes):
        flag = "--" + f.name.replace("_", "-")
        if f.name in COUNTS:
            parser.add_argument(flag, help=f"comma-separated cohort counts, default {f.default}")
        else:
            kind = float if f.type in ("float", float) else int
            parser.add_argument(flag, type=kind, help=f"default {f.default}")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> phases.Sizes:
    sizes = phases.Sizes.smoke() if args.smoke else phases.Sizes()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(phases.Sizes):
        value = getattr(args, f.name)
        if value is None:
            continue
        if f.name in COUNTS:
            value = tuple(int(x) for x in value.split(","))
        changes[f.name] = value
    return dataclasses.replace(sizes, **changes)


def overrides(assignments: list[str]) -> dict[str, dict[str, Any]]:
    """["batching.linger_ms=500"] -> {"batching": {"linger_ms": 500}} (values parsed as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        section, dot, name = key.partition(".")
        if not (sep and dot and section and name):
            raise SystemExit(f"--set {text!r}: expected SECTION.KEY=VALUE")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    chosen = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(chosen) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
    sizes = sizes_from(args)
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = _environment(argv, sizes, args.set)
        broker = rig.Broker(workdir, args.bootstrap)
        try:
            ctx = phases.Context(broker, workdir, sizes, args.profile, overrides(args.set))
            _run(ctx, chosen, results)
        finally:
            broker.stop()
        results["environment"]["load_average_end"] = list(rig.load_average())
        _carry_over(results, args.out)
        report.write(results, args.out)
    print((args.out / "latest.md").read_text())
    return results


def _environment(
    argv: list[str] | None, sizes: phases.Sizes, args_set: list[str]
) -> dict[str, Any]:
    args = sys.argv[1:] if argv is None else argv
    return {
        "environment": {
            "command": " ".join(["python -m tests.bench.run", shlex.join(args)]).strip(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_start": list(rig.load_average()),
            "sizes": dataclasses.asdict(sizes),
            "streamer_overrides": overrides(args_set),
        }
    }


def _run(ctx: phases.Context, chosen: list[str], results: dict[str, Any]) -> None:
    s = ctx.sizes
    backlog = None
    if "catchup" in chosen or "baseline" in chosen:
        _say("catch-up" if "catchup" in chosen else "generating the log for the baseline")
        if "catchup" in chosen:
            results["catchup"], backlog = phases.catchup(ctx)
        else:
            backlog, _ = phases.generate(ctx.sizes.baseline_events, ctx.sizes.catchup_cohorts,
                                          ctx.sizes.catchup_users, seed=7)  # fmt: skip
    if "baseline" in chosen and backlog is not None:
        _say("baseline")
        results["baseline"] = phases.baseline(ctx, backlog)
    del backlog  # a 2M-event log is ~0.5 GB of the bench process
    if "catchup" in results and "baseline" in results:
        c, b = results["catchup"], results["baseline"]
        results["ratios"] = {
            "throughput": c["events_per_s"] / b["events_per_s"],
            "cpu_per_event": b["cpu_s_per_million"] / c["cpu_s_per_million"],
        }
    if "budget" in chosen:
        _say("API budget")
        results["budget"] = phases.budget(ctx)
    if "latency" in chosen:
        results["latency"] = []
        for cohorts in ctx.sizes.latency_cohorts:
            _say(f"latency, {cohorts} cohorts")
            run = phases.latency(
                ctx, f"latency{cohorts}", cohorts, s.latency_rate, s.latency_seconds
            )
            results["latency"].append(run)
    if "latency_heavy" in chosen:
        _say(f"latency, {s.heavy_cohorts} cohorts at {s.heavy_rate:g} events/s")
        results["latency_heavy"] = phases.latency(
            ctx, "latency-heavy", s.heavy_cohorts, s.heavy_rate, s.heavy_seconds
        )
    if "step" in chosen:
        _say("step: light, ~10x the budget, light")
        results["step"] = phases.step(ctx)
    if "cohort_scaling" in chosen:
        _say(f"cohort scaling, {ctx.sizes.scaling_cohorts} distinct cohorts")
        results["cohort_scaling"] = phases.cohort_scaling(ctx)


def _carry_over(results: dict[str, Any], out: Path) -> None:
    """The phases not run now keep their figures from the previous latest.json in `out`."""
    previous = out / "latest.json"
    if not previous.exists():
        return
    old = json.loads(previous.read_text())
    kept = [k for k in old if k not in results and k not in ("environment", "checks")]
    if "ratios" in kept and ("catchup" in results or "baseline" in results):
        kept.remove("ratios")  # a ratio of two runs' figures would mean nothing
    for key in kept:
        results[key] = old[key]
    if kept:
        env = old["environment"]
        results["environment"]["carried_over"] = {
            "phases": kept,
            "command": env["command"],
            "started": env["started"],
            **({"from": env["carried_over"]} if "carried_over" in env else {}),
        }


def _say(what: str) -> None:
    print(f"bench: {time.strftime('%H:%M:%S')} {what} (load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
