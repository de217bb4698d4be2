"""`cohort-streamer demo` (`make demo`): the whole product on this machine, checked end to end.

Starts a local Kafka and the MoEngage emulator, produces a realistic sample log (with some
invalid events), runs the real `cohort-streamer run` until the group has committed everything,
stops it with SIGTERM, and compares each cohort in the emulator with the log's expected state.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from streamer.dev.devkafka import DevKafka, create_topic
from streamer.dev.harness import StreamerProcess, committed_lag, wait_caught_up, write_config
from streamer.dev.sample import SampleLog, generate, produce
from streamer.emulator.config import EmulatorConfig, Knobs
from streamer.emulator.server import EmulatorThread

WORKSPACE_ID = "demo-workspace"
API_KEY = "demo-api-key"
TOPIC = "cohort-membership"
DLQ_TOPIC = "cohort-membership-dlq"
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=40_000, help="sample log size")
    parser.add_argument("--cohorts", type=int, default=36)
    parser.add_argument("--users", type=int, default=8_000)
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="streamer config")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to catch up")


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="cohort-streamer-demo-") as tmp:
        work = Path(tmp)
        kafka = DevKafka(work / "kafka")
        print("demo: starting a local Kafka (first run downloads it from Maven Central) ...")
        bootstrap = kafka.start()
        emulator = EmulatorThread(
            EmulatorConfig(workspace_id=WORKSPACE_ID, knobs=Knobs(api_key=API_KEY))
        ).start()
        try:
            return _demo(args, work, bootstrap, emulator.url)
        finally:
            emulator.stop()
            kafka.stop()


def _demo(args: argparse.Namespace, work: Path, bootstrap: str, emulator_url: str) -> int:
    create_topic(bootstrap, TOPIC, partitions=6)
    create_topic(bootstrap, DLQ_TOPIC, partitions=1)
    log = generate(args.events, args.cohorts, args.users, invalid_every=500)
    print(f"demo: producing {len(log.messages)} events ({log.invalid} invalid) to {TOPIC} ...")
    produce(bootstrap, TOPIC, log.messages)

    settings: dict[str, Any] = yaml.safe_load(args.config.read_text())
    settings["kafka"]["bootstrap_servers"] = bootstrap
    settings["moengage"]["base_url"] = emulator_url
    config = write_config(work / "streamer.yaml", settings)
    env = {"MOENGAGE_WORKSPACE_ID": WORKSPACE_ID, "MOENGAGE_API_KEY": API_KEY}
    streamer = StreamerProcess(config, env, work / "streamer.log").start()
    print(f"demo: streamer running (pid {streamer.pid}), waiting until it has caught up ...")
    try:
        took = wait_caught_up(bootstrap, settings["kafka"]["group_id"], [TOPIC], args.timeout)
    except TimeoutError as exc:
        print(f"demo: FAILED: {exc}\n{streamer.log_tail()}")
        streamer.kill()
        return 1
    code = streamer.terminate()
    print(f"demo: caught up in {took:.1f}s; SIGTERM -> exit code {code}")
    return _report(log, emulator_url, bootstrap, code)


def _report(log: SampleLog, emulator_url: str, bootstrap: str, exit_code: int) -> int:
    cohorts = _get(emulator_url, "/_emulator/cohorts")
    stats = _get(emulator_url, "/_emulator/stats")
    dlq_count = committed_lag(bootstrap, "demo-dlq-reader", [DLQ_TOPIC])
    print(f"\n{'cohort':<14}{'expected':>10}{'in MoEngage':>13}  ok")
    mismatches = 0
    for cohort_id in sorted(log.expected):
        want = log.expected[cohort_id]
        got = _members(emulator_url, cohort_id)
        ok = got == want
        mismatches += not ok
        print(f"{cohort_id:<14}{len(want):>10}{len(got):>13}  {'yes' if ok else 'NO'}")
    print(
        f"\nevents consumed: {len(log.messages)}   valid: {log.valid}   "
        f"DLQ messages: {dlq_count} (expected {log.invalid})\n"
        f"requests by status: {json.dumps(stats['by_status'])}   "
        f"members per request: {json.dumps(stats['members_per_request'])}\n"
        f"largest body: {stats['max_body_bytes']} bytes   "
        f"most accepted requests in a {stats['window_seconds']:g}s window: "
        f"{stats['max_accepted_in_window']}\n"
        f"cohorts in MoEngage: {len(cohorts['cohorts'])}   "
        f"mismatching cohorts: {mismatches}"
    )
    good = mismatches == 0 and dlq_count == log.invalid and exit_code == 0
    print("demo: OK" if good else "demo: FAILED")
    return 0 if good else 1


def _members(base_url: str, cohort_id: str) -> set[str]:
    try:
        return set(_get(base_url, f"/_emulator/cohorts/{cohort_id}/members")["members"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # never synced: everyone who entered also left within a window
            return set()
        raise


def _get(base_url: str, path: str) -> Any:
    with urllib.request.urlopen(base_url + path, timeout=30) as resp:
        return json.loads(resp.read())
