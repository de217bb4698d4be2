"""Config mistakes (issue 5, item 8): one clear line naming the problem, a non-zero exit.

Each case runs the real `cohort-streamer run` and checks the whole of its output: stderr is
exactly one line, starting `cohort-streamer:` and naming the key or variable at fault, the
exit code is 2 for a configuration error and 3 for a start-up (broker) problem, there is no
traceback, and the API key's value appears nowhere (not even when it is the wrong value).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.fixtures.streamer import free_port

API_KEY = "sk-live-4f9d2c1e-DO-NOT-PRINT"
WORKSPACE = "ws-config-test"


def _run(
    tmp_path: Path,
    config: dict[str, object] | bytes,
    env: dict[str, str],
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "streamer.yaml"
    raw = config if isinstance(config, bytes) else yaml.safe_dump(config).encode()
    path.write_bytes(raw)
    # a clean environment: nothing from the developer's shell may leak into the case
    base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER__", "MOENGAGE_"))}
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=timeout,
    )


def _config(bootstrap: str, **sections: dict[str, object]) -> dict[str, object]:
    config: dict[str, object] = {
        "kafka": {"bootstrap_servers": bootstrap, "dlq_topic": "dlq", "topics": ["events"]},
        "server": {"host": "127.0.0.1", "port": free_port()},
    }
    for name, values in sections.items():
        existing = config.get(name)
        config[name] = {**existing, **values} if isinstance(existing, dict) else values
    return config


CREDENTIALS = {"MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY": API_KEY}


def _closed_port() -> int:
    return free_port()  # bound and released at once: nothing listens there


CASES: list[tuple[str, dict[str, dict[str, object]], dict[str, str], int, tuple[str, ...]]] = [
    # (id, config sections, env, exit code, words the single stderr line must contain)
    (
        "unknown-key",
        {"moengage": {"timeout_secs": 5}},
        CREDENTIALS,
        2,
        ("moengage.timeout_secs", "unknown key"),
    ),
    (
        "unknown-section",
        {"batchng": {"linger_ms": 5}},
        CREDENTIALS,
        2,
        ("batchng", "unknown key"),
    ),
    (
        "wrong-type",
        {"moengage": {"rate_limit_per_minute": "lots"}},
        CREDENTIALS,
        2,
        ("moengage.rate_limit_per_minute", "integer"),
    ),
    (
        "wrong-type-from-env",
        {},
        {**CREDENTIALS, "STREAMER__BATCHING__LINGER_MS": "soon"},
        2,
        ("batching.linger_ms",),
    ),
    (
        "reserved-consumer-key",
        {"kafka": {"consumer": {"enable.auto.commit": True}}},
        CREDENTIALS,
        2,
        ("kafka.consumer", "enable.auto.commit"),
    ),
    (
        "missing-api-key",
        {},
        {"MOENGAGE_WORKSPACE_ID": WORKSPACE},
        2,
        ("MOENGAGE_API_KEY",),
    ),
    (
        "missing-workspace",
        {},
        {"MOENGAGE_API_KEY": API_KEY},
        2,
        ("MOENGAGE_WORKSPACE_ID",),
    ),
    (
        "unreadable-key-file",
        {},
        {"MOENGAGE_WORKSPACE_ID": WORKSPACE, "MOENGAGE_API_KEY_FILE": "/nonexistent/api-key"},
        2,
        ("MOENGAGE_API_KEY_FILE", "cannot read"),
    ),
]


@pytest.mark.parametrize(
    ("sections", "env", "code", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_config_mistake_gives_one_line_and_exit_2(
    tmp_path: Path,
    sections: dict[str, dict[str, object]],
    env: dict[str, str],
    code: int,
    words: tuple[str, ...],
) -> None:
    result = _run(tmp_path, _config(f"127.0.0.1:{_closed_port()}", **sections), env)
    _assert_one_clear_line(result, code, words)


def test_unreachable_broker_at_start_gives_one_line_and_exit_3(tmp_path: Path) -> None:
    """A closed port and `kafka.startup_timeout_seconds: 3`: exit 3 after ~3 s, one line.

    librdkafka would retry forever and print its own connection errors; the streamer must
    give up after the timeout and say which setting points at nothing.
    """
    bootstrap = f"127.0.0.1:{_closed_port()}"
    config = _config(bootstrap, kafka={"startup_timeout_seconds": 3})
    result = _run(tmp_path, config, CREDENTIALS)
    _assert_one_clear_line(result, 3, ("kafka.bootstrap_servers", bootstrap, "3s"))


def test_missing_topic_at_start_gives_one_line_and_exit_3(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    config = _config(
        kafka_bootstrap,
        kafka={"topics": ["no-such-topic-r5"], "startup_timeout_seconds": 10},
    )
    result = _run(tmp_path, config, CREDENTIALS)
    _assert_one_clear_line(result, 3, ("kafka.topics", "no-such-topic-r5", "does not exist"))


def _assert_one_clear_line(
    result: subprocess.CompletedProcess[str], code: int, words: tuple[str, ...]
) -> None:
    shown = (
        f"exit {result.returncode}\n--- stderr ---\n{result.stderr}--- stdout ---\n{result.stdout}"
    )
    assert result.returncode == code, shown
    assert "Traceback" not in result.stderr + result.stdout, shown
    assert API_KEY not in result.stderr + result.stdout, shown
    # besides the start-up line that names the version (logged once the config is read)
    lines = [x for x in result.stderr.strip().splitlines() if " starting (python " not in x]
    assert len(lines) == 1, shown
    line = lines[0]
    # a config error is printed before logging starts; a start-up problem is a log line
    assert line.startswith("cohort-streamer: ") or " ERROR streamer: cannot start: " in line, shown
    for word in words:
        assert word in line, f"{word!r} missing from the error line: {line}"


# --- issue 13, item 6: every configuration mistake exits 2 naming the key, before connecting ---
#
# The broker address is a listening socket nobody serves: after the run it must hold no
# connection attempt, so "before anything connects" is checked, not assumed.

ISSUE_13_CASES: list[tuple[str, dict[str, dict[str, object]], dict[str, str], tuple[str, ...]]] = [
    # (id, config sections, extra env, words the single stderr line must contain)
    (
        "consume-batch-size-over-confluent-limit-env",
        {},
        {"STREAMER__KAFKA__CONSUME_BATCH_SIZE": "2000000"},
        ("kafka.consume_batch_size", "1000000"),
    ),
    (
        "consume-batch-size-huge-file",
        {"kafka": {"consume_batch_size": 10**18}},
        {},
        ("kafka.consume_batch_size", "1000000"),
    ),
    (
        "queued-kbytes-over-librdkafka-range",
        {"kafka": {"queued_max_messages_kbytes": 99999999}},
        {},
        ("kafka.queued_max_messages_kbytes", "2097151"),
    ),
    (
        "queued-kbytes-over-librdkafka-range-env",
        {},
        {"STREAMER__KAFKA__QUEUED_MAX_MESSAGES_KBYTES": "2097152"},
        ("kafka.queued_max_messages_kbytes", "2097151"),
    ),
    (
        "unknown-consumer-property",
        {"kafka": {"consumer": {"no.such.property": 1}}},
        {},
        ("kafka.consumer.no.such.property", "librdkafka"),
    ),
    (
        "unknown-producer-property-env",
        {},
        {"STREAMER__KAFKA__PRODUCER": "{no.such.property: 1}"},
        ("kafka.producer.no.such.property", "librdkafka"),
    ),
    (
        "consumer-value-not-a-number",
        {"kafka": {"consumer": {"fetch.wait.max.ms": 100, "session.timeout.ms": "abc"}}},
        {},
        ("kafka.consumer.session.timeout.ms",),
    ),
    (
        "consumer-value-out-of-range-env",
        {},
        {"STREAMER__KAFKA__CONSUMER": "{session.timeout.ms: -5}"},
        ("kafka.consumer.session.timeout.ms", "1..3600000"),
    ),
    (
        "producer-compression-unknown",
        {"kafka": {"producer": {"compression.type": "zip"}}},
        {},
        ("kafka.producer.compression.type",),
    ),
    (
        "producer-acks-is-the-streamers",
        {"kafka": {"producer": {"acks": 7}}},
        {},
        ("kafka.producer", "acks"),
    ),
    (
        "server-host-not-an-ip",
        {"server": {"host": "999.1.1.1"}},
        {},
        ("server.host",),
    ),
    (
        "server-host-unresolvable",
        {"server": {"host": "no-such-host.invalid"}},
        {},
        ("server.host",),
    ),
    (
        "base-url-not-a-url",
        {"moengage": {"base_url": "not a url"}},
        {},
        ("moengage.base_url", "http"),
    ),
    (
        "base-url-ftp",
        {"moengage": {"base_url": "ftp://api-01.moengage.com"}},
        {},
        ("moengage.base_url", "http"),
    ),
    (
        "base-url-with-credentials-env",
        {},
        {"STREAMER__MOENGAGE__BASE_URL": f"https://ws:{API_KEY}@api-01.moengage.com"},
        ("moengage.base_url",),
    ),
    (
        "server-host-not-of-this-machine",
        {"server": {"host": "192.0.2.1"}},
        {},
        ("server.host", "192.0.2.1"),
    ),
    (
        "bootstrap-servers-not-host-port",
        {"kafka": {"bootstrap_servers": "not a url"}},
        {},
        ("kafka.bootstrap_servers", "host:port"),
    ),
    (
        "topic-name-kafka-cannot-have",
        {"kafka": {"topics": ["^cohort-.*"]}},
        {},
        ("kafka.topics",),
    ),
    (
        "env-number-too-long-to-read",
        {},
        {"STREAMER__BATCHING__LINGER_MS": "9" * 5000},
        ("STREAMER__BATCHING__LINGER_MS",),
    ),
    (
        "timeout-huge-float",
        {"moengage": {"timeout_seconds": 1e308}},
        {},
        ("moengage.timeout_seconds",),
    ),
    (
        "linger-huge-int-env",
        {},
        {"STREAMER__BATCHING__LINGER_MS": str(10**18)},
        ("batching.linger_ms",),
    ),
]


@pytest.mark.parametrize(
    ("sections", "env", "words"),
    [case[1:] for case in ISSUE_13_CASES],
    ids=[case[0] for case in ISSUE_13_CASES],
)
def test_config_mistake_exits_2_naming_the_key_before_connecting(
    tmp_path: Path,
    sections: dict[str, dict[str, object]],
    env: dict[str, str],
    words: tuple[str, ...],
) -> None:
    with _broker_trap() as (bootstrap, attempts):
        config = _config(bootstrap, **sections)
        _give_up_on_the_trap_soon(config)
        result = _run(tmp_path, config, {**CREDENTIALS, **env})
        _assert_one_clear_line(result, 2, words)
        assert attempts() == 0, "the streamer connected to Kafka before refusing its config"


@pytest.mark.parametrize(
    "text",
    [b"kafka: \xff\xfe\n", b"kafka:\n  consume_batch_size: " + b"9" * 5000 + b"\n"],
    ids=["not-utf8", "number-too-long-to-read"],
)
def test_unreadable_config_file_exits_2_in_one_line(tmp_path: Path, text: bytes) -> None:
    result = _run(tmp_path, text, CREDENTIALS)
    _assert_one_clear_line(result, 2, ("--config",))


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_metrics_port_in_use_exits_2_naming_server_port(tmp_path: Path, host: str) -> None:
    with socket.socket() as taken, _broker_trap() as (bootstrap, attempts):
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(bootstrap, server={"host": host, "port": port})
        _give_up_on_the_trap_soon(config)
        result = _run(tmp_path, config, CREDENTIALS)
        _assert_one_clear_line(result, 2, ("server.port", str(port)))
        assert attempts() == 0, "the streamer connected to Kafka before binding its port"


@contextlib.contextmanager
def _broker_trap() -> Iterator[tuple[str, Callable[[], int]]]:
    """A listening socket posing as the broker; attempts() counts connections made to it."""
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(16)
        trap.setblocking(False)

        def attempts() -> int:
            count = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    trap.accept()[0].close()
                    count += 1
            return count

        yield f"127.0.0.1:{trap.getsockname()[1]}", attempts


def _give_up_on_the_trap_soon(config: dict[str, object]) -> None:
    """Should the config pass, start-up gives up on the silent broker in 3 s, not 30."""
    kafka = config["kafka"]
    assert isinstance(kafka, dict)
    kafka.setdefault("startup_timeout_seconds", 3)
