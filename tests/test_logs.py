"""Logs a log pipeline can read (issue 15, item 4): `log_format: json` is one JSON object per
line with time, level, logger, message and the structured fields; no credential appears in any
line at any level; a burst of one warning is logged once plus a count."""

from __future__ import annotations

import base64
import io
import logging
import signal
import sys
import time
import warnings
from typing import Any

import orjson
import pytest

from streamer.logs import REDACTED, Redactor, configure
from streamer.version import VERSION
from tests.fixtures.observe import http_get
from tests.fixtures.streamer import StreamerRig

SASL_PASSWORD = 'consumer-sasl-pw"with\\quote'
PRODUCER_PASSWORD = "producer-sasl-pw-\u00fc\u00df"


@pytest.fixture
def restore_logging() -> Any:
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "secret",
    ["plain-api-key-123", 'with"quote', "back\\slash", "new\nline", "\u00fcnicode-\u2603"],
)
def test_every_json_line_parses_and_holds_no_secret(secret: str, restore_logging: Any) -> None:
    redactor = Redactor()
    redactor.add_secrets([secret])
    stream = io.StringIO()
    configure("DEBUG", "json", redactor, stream)
    log = logging.getLogger("streamer.test")
    log.debug("debug %s", secret)
    log.info("multi\nline %r", {"key": secret}, extra={"cohort_id": f"c-{secret}", "status": 401})
    try:
        raise ValueError(f"boom {secret}")
    except ValueError:
        log.exception("failed", extra={"topic": "t", "partition": 3, "offset": 42})
    text = stream.getvalue()
    assert len(text.splitlines()) == 3, text
    assert secret not in text and orjson.dumps(secret).decode()[1:-1] not in text, text
    debug, info, error = _lines(stream)
    assert {"time", "level", "logger", "message"} <= debug.keys()
    assert (debug["level"], debug["logger"]) == ("DEBUG", "streamer.test")
    assert debug["message"] == f"debug {REDACTED}"
    assert (info["cohort_id"], info["status"]) == (f"c-{REDACTED}", 401)
    assert (error["topic"], error["partition"], error["offset"]) == ("t", 3, 42)
    assert "ValueError" in error["exception"]


def test_warnings_and_an_uncaught_exception_are_json_lines_too(restore_logging: Any) -> None:
    redactor = Redactor()
    redactor.add_secrets(["s3cret-key"])
    stream = io.StringIO()
    configure("INFO", "json", redactor, stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated s3cret-key", DeprecationWarning, stacklevel=1)
    try:
        raise RuntimeError("crash with s3cret-key")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    assert "s3cret-key" not in stream.getvalue()
    warning, crash = _lines(stream)
    assert warning["logger"] == "py.warnings" and REDACTED in warning["message"]
    assert crash["level"] == "CRITICAL" and "RuntimeError" in crash["exception"]


@pytest.mark.parametrize("burst", [1, 2, 7, 500])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_burst_of_one_warning_is_one_line_and_a_count(
    burst: int, log_format: Any, restore_logging: Any
) -> None:
    stream = io.StringIO()
    configure("INFO", log_format, Redactor(), stream, repeat_window=0.5)
    log = logging.getLogger("streamer.test")
    for i in range(burst):
        log.warning("bad event %d", i)
        log.info("info is never limited %d", i)
    log.warning("another source line")
    time.sleep(0.8)  # the window ends: its count is logged
    lines = stream.getvalue().splitlines()
    assert sum("info is never limited" in line for line in lines) == burst
    bad = [line for line in lines if "bad event" in line]
    assert "bad event 0" in bad[0]
    assert sum("another source line" in line for line in lines) == 1
    if burst == 1:
        assert len(bad) == 1, lines
        return
    assert len(bad) == 2, lines
    assert f"{burst - 1} more like it" in bad[1]
    if log_format == "json":
        assert orjson.loads(bad[1])["repeated"] == burst - 1


def _event(cohort: str, uid: str) -> bytes:
    return orjson.dumps({"action": "enter", "cohort_id": cohort, "cohort_name": cohort, "uid": uid})


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_a_real_run_in_json_logs_every_line_as_json_and_no_credential(
    rig: StreamerRig, level: str
) -> None:
    """The real streamer, Kafka passwords in both client maps, a burst of invalid events that
    carry the API key, SIGHUP (credentials re-read) and SIGTERM: every line parses, none holds
    a credential, the burst is one line plus a count."""
    api_key = rig.emulator.api_key
    token = base64.b64encode(f"{rig.emulator.workspace_id}:{api_key}".encode()).decode()
    secrets = [api_key, token, SASL_PASSWORD, PRODUCER_PASSWORD]
    proc = rig.start(
        log_format="json",
        log_level=level,
        kafka={
            "consumer": {"sasl.password": SASL_PASSWORD},
            "producer": {"sasl.password": PRODUCER_PASSWORD},
        },
    )
    rig.emulator.configure(refuse_uids=["u7"])  # the API answers 400 naming it
    bad = 40
    good = [(f"u{i}".encode(), _event(f"c{i % 3}", f"u{i}")) for i in range(60)]
    invalid = [(f"x{i}".encode(), f'{{"uid": "{api_key}", oops {i}'.encode()) for i in range(bad)]
    rig.produce(good[:30] + invalid + good[30:])
    rig.wait_caught_up(60)
    rig.assert_state(
        {f"c{c}": {f"u{i}" for i in range(60) if i % 3 == c} - {"u7"} for c in range(3)}
    )
    assert proc.metrics_port is not None
    assert http_get(proc.metrics_port, "/readyz")[0] == 200
    proc.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    time.sleep(0.5)
    assert proc.terminate() == 0

    text = proc.log_file.read_text()
    for secret in secrets:
        assert secret not in text, f"a credential in the log:\n{text}"
        assert orjson.dumps(secret).decode()[1:-1] not in text
    lines = [orjson.loads(line) for line in text.splitlines()]  # every line parses
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    if level in ("DEBUG", "INFO"):
        assert f"cohort-streamer {VERSION} starting" in lines[0]["message"], lines[0]
    invalid_lines = [x for x in lines if x["message"].startswith("invalid event")]
    assert invalid_lines[0]["reason"] == "invalid_json"
    assert invalid_lines[0]["topic"] == rig.topic
    assert {"partition", "offset"} <= invalid_lines[0].keys()
    assert len(invalid_lines) == 2, invalid_lines  # the first and the count of the rest
    assert invalid_lines[1]["repeated"] == bad - 1
    [refused] = [x for x in lines if x["message"].startswith("dead-lettering")]
    assert (refused["cohort_id"], refused["status"]) == ("c1", 400), refused
    assert (refused["reason"], refused["topic"]) == ("rejected_by_api", rig.topic), refused
