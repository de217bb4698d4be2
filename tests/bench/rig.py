"""The benchmark's moving parts, each its own process: Kafka, the emulator, the streamer.

The bench process only produces, observes and verifies. It watches the streamer from outside:
psutil for CPU and RSS, the broker for committed offsets, /metrics for what was consumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from streamer.dev.devkafka import THROUGHPUT_JVM_OPTS, DevKafka, create_topic, free_port
from streamer.dev.harness import StreamerProcess, write_config
from tests.fixtures.observe import Sampler, metric, process_tree_cpu_seconds, samples

REPO = Path(__file__).resolve().parents[2]
WORKSPACE_ID = "bench-workspace"
API_KEY = "bench-api-key"
PARTNER = "bench"
UNLIMITED_PER_MINUTE = 10_000_000


class Broker:
    """A DevKafka with throughput JVM settings (or an existing cluster, left alone)."""

    def __init__(self, workdir: Path, bootstrap: str | None) -> None:
        self._kafka: DevKafka | None = None
        if bootstrap is None:
            self._kafka = DevKafka(workdir / "kafka", jvm_opts=THROUGHPUT_JVM_OPTS)
            bootstrap = self._kafka.start()
        self.bootstrap = bootstrap

    @property
    def pid(self) -> int | None:
        return self._kafka.pid if self._kafka is not None else None

    def topic(self, prefix: str, partitions: int) -> str:
        name = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
        create_topic(self.bootstrap, name, partitions=partitions)
        return name

    def stop(self) -> None:
        if self._kafka is not None:
            self._kafka.stop()


class Emulator:
    """The emulator (with the bench recorder) as a child process on a free port."""

    def __init__(
        self, log_file: Path, per_minute: int, window_s: float = 60.0, record_uids: bool = False
    ) -> None:
        cmd = [
            sys.executable, "-m", "tests.bench.emulator",
            "--port", "0", "--workspace-id", WORKSPACE_ID, "--api-key", API_KEY,
            "--rate-limit-per-minute", str(per_minute), "--rate-window-seconds", str(window_s),
        ]  # fmt: skip
        if record_uids:
            cmd.append("--record-uids")
        self._log = log_file.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        found = re.search(r"listening on (\S+)", line)
        if found is None:
            self.stop()
            raise RuntimeError(f"emulator did not start (see {log_file}): {line!r}")
        self.url = found.group(1)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.get("/_emulator/stats")
        return stats

    def requests(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.get("/_bench/requests")
        return rows

    def refused(self) -> list[dict[str, Any]]:
        """Every non-2xx answer: {"t": epoch s, "status": code}."""
        rows: list[dict[str, Any]] = self.get("/_bench/refused")
        return rows

    def acks(self) -> dict[str, float]:
        acks: dict[str, float] = self.get("/_bench/acks")
        return acks

    def members(self, cohort_id: str) -> set[str]:
        try:
            doc = self.get(f"/_emulator/cohorts/{urllib.parse.quote(cohort_id, safe='')}/members")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return set()
            raise
        return set(doc["members"])

    def mismatches(self, expected: dict[str, set[str]]) -> dict[str, tuple[int, int]]:
        """Cohorts whose membership differs from `expected`: (expected, actual) sizes."""
        wrong = {}
        for cohort, want in expected.items():
            got = self.members(cohort)
            if got != want:
                wrong[cohort] = (len(want), len(got))
        return wrong

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def streamer_settings(
    bootstrap: str, topic: str, dlq_topic: str, group: str, url: str, **sections: dict[str, Any]
) -> dict[str, Any]:
    """Defaults of config/streamer.yaml except where the benchmark says otherwise."""
    settings: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "topics": [topic],
            "dlq_topic": dlq_topic,
        },
        "moengage": {"base_url": url, "partner": PARTNER},
        "batching": {},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "log_level": "INFO",
    }
    for name, values in sections.items():
        settings[name].update(values)
    return settings


class Streamer:
    """`cohort-streamer run` as a child (optionally under py-spy), observed from outside."""

    def __init__(
        self, workdir: Path, name: str, settings: dict[str, Any], profile: str | None = None
    ) -> None:
        config = write_config(workdir / f"{name}.yaml", settings)
        self.config = config  # what the consume-only floor reads its consumer settings from
        self.port: int = settings["server"]["port"]
        env = {"MOENGAGE_WORKSPACE_ID": WORKSPACE_ID, "MOENGAGE_API_KEY": API_KEY}
        self._spy: subprocess.Popen[bytes] | None = None
        self._child = StreamerProcess(config, env, workdir / f"{name}.log", self.port)
        if profile is None:
            self._child.start()
            self.process = psutil.Process(self._child.pid)
        else:
            self._spy = _start_under_py_spy(config, env, workdir / f"{name}.log", profile)
            self.process = _python_child(self._spy.pid)

    def metric(self, name: str) -> float:
        """Sum of every series of one metric on /metrics."""
        return metric(self.port, name)

    def gauge(self, name: str) -> float | None:
        """One unlabelled series on /metrics, or None if the streamer does not export it."""
        found = samples(self.port, name)
        return found[0][1] if found else None

    def consumed(self) -> float:
        return self.metric("cohort_streamer_events_consumed_total")

    def cpu_seconds(self) -> float:
        """Its own and its group reader's (a child process)."""
        return process_tree_cpu_seconds(self.process)

    def cpu_by_thread(self) -> dict[str, float]:
        """CPU seconds per thread name: librdkafka names its threads rdk:*; Python's threads are
        all "python", so the main (event loop) thread is reported apart as "python:main"."""
        out: dict[str, float] = {}
        pid = self.process.pid
        for thread in self.process.threads():
            try:
                comm = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
            except OSError:
                continue
            if thread.id == pid:
                comm += ":main"
            out[comm] = out.get(comm, 0.0) + thread.user_time + thread.system_time
        return out

    def terminate(self) -> int:
        """SIGTERM; the exit code of a graceful stop (0)."""
        if self._spy is None:
            return self._child.terminate()
        self.process.terminate()
        code = self.process.wait(60)
        self._spy.wait(120)  # py-spy writes its profile once the target exits
        return int(code or 0)

    def log_tail(self) -> str:
        return self._child.log_tail()

    def close(self) -> None:
        """Kill it if it still runs (a phase failed half-way); harmless after terminate()."""
        for proc in (self.process, self._spy):
            with contextlib.suppress(psutil.Error, ProcessLookupError, AttributeError):
                if proc is not None and proc.is_running():
                    proc.kill()


def _start_under_py_spy(
    config: Path, env: dict[str, str], log_file: Path, output: str
) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    fmt = "raw" if output.endswith(".txt") else "speedscope"  # raw: collapsed stacks, greppable
    # --gil: sample only the thread holding the GIL, i.e. Python code actually running (a thread
    # waiting for the GIL or for I/O would otherwise look busy)
    cmd = [
        str(spy), "record", "--gil", "--rate", "200", "--format", fmt, "-o", output, "--",
        sys.executable, "-m", "streamer.cli", "run", "--config", str(config),
    ]  # fmt: skip
    with log_file.open("ab") as out:
        return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=out)


def _python_child(pid: int, timeout: float = 10) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(pid).children()
        if children:
            return children[0]
        time.sleep(0.05)
    raise RuntimeError("py-spy did not start the streamer")


@dataclass
class Sample:
    t: float  # monotonic
    rss_mb: float
    cpu_s: float
    committed: int


class Observer:
    """Samples the streamer's RSS (with children) and CPU and the group's committed offsets."""

    def __init__(self, streamer: Streamer, probe: CommitProbe, interval: float = 0.2) -> None:
        self.streamer = streamer
        self.probe = probe
        self._sampler = Sampler(self.sample, interval)

    def start(self) -> Observer:
        self._sampler.start()
        return self

    def stop(self) -> None:
        self._sampler.stop()

    @property
    def samples(self) -> list[Sample]:
        return self._sampler.values

    def sample(self) -> Sample:
        proc = self.streamer.process
        rss = proc.memory_info().rss + sum(
            child.memory_info().rss for child in proc.children(recursive=True)
        )
        return Sample(
            time.monotonic(), rss / 2**20, self.streamer.cpu_seconds(), self.probe.committed()
        )

    @property
    def peak_rss_mb(self) -> float:
        return max((s.rss_mb for s in self.samples), default=float("nan"))


class CommitProbe:
    """How many messages of a topic the group has committed (one long-lived client, no join)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        metadata = self._consumer.list_topics(topic, timeout=10)
        self._partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        self._low = {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=10)[0]
            for tp in self._partitions
        }
        self._lock = threading.Lock()

    def high(self) -> int:
        """Messages in the topic now (sum of high watermarks minus low ones)."""
        with self._lock:
            return sum(
                self._consumer.get_watermark_offsets(tp, timeout=10)[1] - self._low[tp.partition]
                for tp in self._partitions
            )

    def committed(self) -> int:
        with self._lock:
            result = self._consumer.committed(self._partitions, timeout=10)
        return sum(max(0, tp.offset - self._low[tp.partition]) for tp in result if tp.offset >= 0)

    def close(self) -> None:
        self._consumer.close()


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
