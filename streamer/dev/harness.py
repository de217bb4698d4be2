"""Run and observe a streamer from outside: the demo, the end-to-end tests and the benchmark.

A StreamerProcess is the real `cohort-streamer run` in a subprocess (so tests can SIGTERM or
kill -9 it); `committed_lag` asks the broker how far the group's commits are behind the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition


def write_config(path: Path, settings: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(settings), sort_keys=False), encoding="utf-8")
    return path


def committed_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    """Messages in `topics` past the group's committed offsets (0 once everything is committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in metadata.topics[topic].partitions
        ]
        committed = consumer.committed(partitions, timeout=10)
        lag = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = tp.offset if tp.offset >= 0 else low
            lag += max(0, high - start)
        return lag
    finally:
        consumer.close()


def wait_caught_up(
    bootstrap: str, group: str, topics: list[str], timeout: float, poll: float = 0.5
) -> float:
    """Block until the group committed every message; returns the seconds it took."""
    started = time.monotonic()
    while True:
        lag = committed_lag(bootstrap, group, topics)
        if lag == 0:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"group {group} still {lag} messages behind after {timeout:.0f}s")
        time.sleep(poll)


class StreamerProcess:
    """`cohort-streamer run --config PATH` as a child process, with its output in a log file."""

    def __init__(
        self,
        config: Path,
        env: Mapping[str, str],
        log_file: Path,
        metrics_port: int | None = None,
    ) -> None:
        self.config = config
        self.metrics_port = metrics_port
        self.env = {**os.environ, **env}
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> StreamerProcess:
        out = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "run", "--config", str(self.config)],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the exit code of a graceful stop."""
        return self._stop(signal.SIGTERM, timeout)

    def kill(self) -> int:
        return self._stop(signal.SIGKILL, 10)

    def _stop(self, sig: signal.Signals, timeout: float) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
