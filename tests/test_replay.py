"""`cohort-streamer replay` on the real broker: plans, refusals, and a full re-sync."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from streamer.dev.harness import write_config
from streamer.dev.sample import generate
from tests.fixtures.observe import wait_for
from tests.fixtures.streamer import StreamerRig


def replay(rig: StreamerRig, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(rig.workdir / "replay.yaml", rig.settings())
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "replay", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def plan_rows(output: str) -> dict[int, tuple[str, int, int]]:
    """partition -> (current, new, to replay) from the printed table."""
    rows = {}
    for line in output.splitlines()[1:]:
        cells = line.split()
        if len(cells) == 5 and cells[1].isdigit():
            rows[int(cells[1])] = (cells[2], int(cells[3]), int(cells[4]))
    return rows


def run_to_completion(rig: StreamerRig) -> None:
    proc = rig.start()
    rig.wait_caught_up()
    assert proc.terminate() == 0


def test_dry_run_prints_the_plan_and_changes_nothing(rig: StreamerRig) -> None:
    log = generate(events=3_000, cohorts=4, users=400, seed=21)
    rig.produce(log.messages)
    run_to_completion(rig)
    result = replay(rig, "--to-earliest")
    assert result.returncode == 0, result.stderr
    rows = plan_rows(result.stdout)
    assert sorted(rows) == list(range(6))
    assert sum(r[2] for r in rows.values()) == len(log.messages)
    assert all(r[1] == 0 for r in rows.values())
    assert f"total events to replay: {len(log.messages)}" in result.stdout
    assert "dry run" in result.stdout
    assert rig.lag() == 0  # nothing moved


def test_replay_refuses_while_the_group_has_live_members(rig: StreamerRig) -> None:
    rig.produce(generate(events=200, cohorts=2, users=50).messages)
    proc = rig.start()
    rig.wait_caught_up()
    result = replay(rig, "--to-earliest", "--execute")
    assert result.returncode == 4
    assert "live member" in result.stderr and rig.group in result.stderr
    assert rig.lag() == 0
    assert proc.terminate() == 0


def test_full_resync_from_earliest_restores_the_same_state(rig: StreamerRig) -> None:
    log = generate(events=6_000, cohorts=6, users=900, seed=23, invalid_every=250)
    rig.produce(log.messages)
    run_to_completion(rig)
    rig.assert_state(log.expected)

    rig.emulator.reset()
    assert all(not rig.emulator.members(c) for c in log.expected)
    result = replay(rig, "--to-earliest", "--execute")
    assert result.returncode == 0, result.stderr
    assert rig.lag() == len(log.messages)
    run_to_completion(rig)
    rig.assert_state(log.expected)


def test_offset_shift_partition_and_datetime_targets(rig: StreamerRig) -> None:
    first = generate(events=1_200, cohorts=3, users=300, seed=25)
    rig.produce(first.messages)
    time.sleep(1.5)
    boundary = datetime.now(UTC)
    time.sleep(1.5)
    second = generate(events=600, cohorts=3, users=300, seed=26)
    rig.produce(second.messages)
    run_to_completion(rig)
    ends = {p: int(r[0]) for p, r in plan_rows(replay(rig, "--to-latest").stdout).items()}

    shifted = plan_rows(replay(rig, "--shift-by", "-5", "--partitions", "0,2").stdout)
    assert sorted(shifted) == [0, 2]
    assert all(new == ends[p] - 5 and n == 5 for p, (_c, new, n) in shifted.items())

    clamped = plan_rows(replay(rig, "--to-offset", "999999999").stdout)
    assert all(new == ends[p] for p, (_c, new, _n) in clamped.items())

    by_time = plan_rows(replay(rig, "--to-datetime", boundary.isoformat()).stdout)
    assert sum(n for _c, _new, n in by_time.values()) == len(second.messages)

    result = replay(rig, "--to-datetime", boundary.isoformat(), "--execute")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: rig.lag() == len(second.messages), 10, "offsets moved to the datetime")


def test_bad_arguments_are_one_line_errors(rig: StreamerRig, tmp_path: Path) -> None:
    result = replay(rig, "--to-datetime", "yesterday")
    assert result.returncode == 2 and "--to-datetime" in result.stderr
    result = replay(rig, "--to-earliest", "--partitions", "a,b")
    assert result.returncode == 2 and "--partitions" in result.stderr
    result = replay(rig, "--to-earliest", "--topic", "no-such-topic")
    assert result.returncode == 1 and "no-such-topic" in result.stderr
