"""The benchmark's own code on tiny sizes (seconds), so `make bench` cannot rot unnoticed.

Not a performance test: it asserts the result structure and the correctness side of every
phase (final state, no 429, nothing lost, clean exits), never a speed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.bench import micro, run, timeline


@pytest.mark.slow
def test_bench_smoke_run_produces_a_sane_report(kafka_bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = ["--smoke", "--bootstrap", kafka_bootstrap, "--out", str(out),
            "--workdir", str(tmp_path / "work")]  # fmt: skip
    results = run.main(argv)

    assert json.loads((out / "latest.json").read_text())["checks"] == results["checks"]
    assert "| measure | target | measured | met |" in (out / "latest.md").read_text()
    for picture in ("latest.png", "budget.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    catchup = results["catchup"]
    assert catchup["final_state_ok"], catchup["mismatched_cohorts"]
    assert catchup["exit_code"] == 0
    assert set(catchup["by_status"]) == {"200"}
    assert catchup["events_per_s"] > 0 and catchup["cpu_s_per_million"] > 0
    assert catchup["floor_events_per_s"] > 0 and catchup["floor_cpu_s_per_million"] >= 0
    assert 0 < catchup["peak_rss_mb"] < 2000
    assert len(catchup["series"]["t"]) == len(catchup["series"]["committed"]) > 0

    baseline = results["baseline"]
    assert baseline["accepted"] == baseline["events"] == 200
    assert results["ratios"]["throughput"] > 1

    budget = results["budget"]
    assert budget["final_state_ok"], budget["mismatched_cohorts"]
    assert budget["status_429"] == 0
    assert budget["max_arrivals_in_window"] <= budget["budget"]["requests"]
    assert budget["requests"] >= budget["lower_bound"]["requests"] > 0
    assert budget["full_flush_requests"] > 0 and 0 < budget["mean_fill_full_flushes"] <= 1
    assert budget["exit_code"] == 0

    assert [lat["cohorts"] for lat in results["latency"]] == [2, 10]
    assert results["latency_heavy"]["cohorts"] == 5
    for lat in [*results["latency"], results["latency_heavy"]]:
        assert lat["lost"] == 0 and lat["acknowledged"] == lat["events"] > 0
        assert 0 < lat["p50_s"] <= lat["p99_s"] <= lat["max_s"]
        assert lat["status_429"] == 0 and "429" not in lat["by_status"]
        assert lat["exit_code"] == 0
        _assert_against_bound(lat)

    step = results["step"]
    assert step["lost"] == 0 and step["acknowledged"] == step["events"] > 0
    assert step["status_429"] == 0 and step["exit_code"] == 0
    assert step["heavy_streams"] >= 5 and step["heavy_demand_vs_budget"] > 0
    assert step["recovery_level_s"] >= step["linger_ms"] / 1000
    recovered = step["recovered_after_s"]
    assert recovered is None or 0 <= recovered <= step["steps"][2]["seconds"]
    use = step["budget_series"]
    assert len(use["t"]) == len(use["requests_per_s"]) == len(use["status_429"]) > 0
    # every accepted request lands in one bucket of the budget series
    assert sum(use["requests_per_s"]) * step["bucket_s"] == pytest.approx(step["by_status"]["200"])
    p99s = [x for x in step["latency_series"]["p99_s"] if x is not None]
    assert p99s and max(p99s) <= step["p99_s"] * 10

    scaling = results["cohort_scaling"]
    assert [r["cohorts"] for r in [scaling["reference"], *scaling["runs"]]] == [1, 20, 200]
    for r in [scaling["reference"], *scaling["runs"]]:
        assert r["final_state_ok"] and r["exit_code"] == 0
        assert r["cohorts_tracked_after_drain"] == 0  # drained: nothing held
        assert r["requests"] == 2 * r["cohorts"] and r["cpu_s_per_cohort"] > 0
        assert 0 < r["rss_after_drain_mb"] <= r["peak_rss_mb"] + 50

    assert {row["what"] for row in results["checks"]} >= {
        "catch-up CPU, streamer process",
        "consume-only floor (librdkafka + Message objects)",
        "requests vs lower bound (budget)",
        "p99 latency vs the budget's bound, 10 cohorts",
        "p99 latency vs the budget's bound, heavy (50 cohorts)",
        "worst cohort p99 / median cohort p99, latency runs",
        "latency back to light level after the step down",
        "429s received (latency runs, step)",
    }


def _assert_against_bound(lat: dict[str, Any]) -> None:
    """The bound is streams x window / budget, never below linger; the ratios are of p99s."""
    cohorts = len(lat["per_cohort"])
    assert cohorts <= lat["streams"] <= 2 * cohorts  # exits start only after a few seconds
    budget = lat["budget"]
    by_budget = lat["streams"] * budget["window_s"] / budget["requests"]
    assert lat["bound_s"] == pytest.approx(max(lat["linger_ms"] / 1000, by_budget))
    assert lat["p99_vs_bound"] == pytest.approx(lat["p99_s"] / lat["bound_s"])
    cohort_p99s = [c["p99_s"] for c in lat["per_cohort"].values()]
    fairness = max(cohort_p99s) / statistics.median(cohort_p99s)
    assert lat["cohort_p99_max_vs_median"] == pytest.approx(fairness) and fairness >= 1
    assert 0 < lat["mean_fill"] <= 1


def test_micro_benchmark_runs_and_settles_every_event() -> None:
    """The per-event microbenchmark (no Kafka): every ingested event is settled, figures > 0."""
    result = asyncio.run(micro.main(events=3000, repeat=1))
    assert result["ingest_us_per_event"] > 0
    assert result["seal_settle_us_per_event"] > 0


def test_recovery_counts_from_the_step_down_to_the_end_of_the_last_slow_bucket() -> None:
    """The step phase's verdict: recovered once every later bucket is within the level."""
    series: dict[str, list[float | None]] = {
        "t": [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0],
        "p99_s": [9.0, 9.0, 3.0, 1.0, 4.0, None, 1.1],  # None: a bucket with too few events
    }
    assert timeline.recovered_after(series, 10.0, 1.2, 5.0) == 15.0  # 20 s bucket ends at 25
    assert timeline.recovered_after(series, 25.0, 1.2, 5.0) == 0.0
    series["p99_s"][-1] = 2.0
    assert timeline.recovered_after(series, 10.0, 1.2, 5.0) is None  # slow to the end


def test_budget_use_puts_each_answer_in_its_bucket() -> None:
    accepted = [{"t": 100.0}, {"t": 101.0}, {"t": 106.0}]
    refused = [{"t": 107.0, "status": 429}, {"t": 107.5, "status": 503}]
    use = timeline.budget_use(accepted, refused, start=100.0, bucket_s=5.0)
    assert use == {"t": [0.0, 5.0], "requests_per_s": [0.4, 0.2], "status_429": [0.0, 1.0]}
