"""Log lines a log pipeline can read: text or one JSON object per line, with credentials
scrubbed from every line and repeated warnings summarised with a count.

Call sites attach structured fields with `extra=` (see FIELDS); the JSON format emits them as
keys, the text format appends them as key=value.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["text", "json"]
# librdkafka's own log lines, from every client, go through Python logging (served by
# consume/poll), never raw to stderr: a start-up failure stays one line, and running logs keep
# the operator's format
RDKAFKA_LOG = logging.getLogger("streamer.librdkafka")

# The structured fields a record may carry (logging's `extra=`), in output order.
FIELDS = ("cohort_id", "topic", "partition", "offset", "reason", "status", "repeated")

# A warning (or worse) logged again from the same line within this window is counted, not
# printed; the count is logged when the window ends. A burst of bad events (one DLQ warning
# each) becomes two lines instead of thousands.
REPEAT_WINDOW_SECONDS = 10.0

REDACTED = "***"


class Redactor:
    """Replaces every secret it was told of with ***. Secrets are added, never forgotten: a
    rotated key is still a key someone may use."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret that contains another is replaced whole
        known = {*self._secrets, *(s for s in secrets if s)}
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if hasattr(record, name)}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the structured fields."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        scrub = self._redactor.scrub
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for name, value in _fields(record).items():
            line[name] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        # scrubbed before encoding: a secret holding a quote or backslash is escaped in the line
        return orjson.dumps(line, default=lambda value: scrub(str(value))).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        return self._redactor.scrub(text)


class RepeatLimiter(logging.Filter):
    """Passes the first warning from a source line per window; counts the rest and logs the
    count (as `repeated`) when the window ends."""

    def __init__(self, handler: logging.Handler, window: float = REPEAT_WINDOW_SECONDS) -> None:
        super().__init__()
        self._handler = handler
        self._window = window
        self._lock = threading.Lock()
        # source line -> (window start, first record, suppressed count)
        self._open: dict[tuple[str, int], tuple[float, logging.LogRecord, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or hasattr(record, "repeated"):
            return True
        key = (record.pathname, record.lineno)
        now = time.monotonic()
        with self._lock:
            opened = self._open.get(key)
            if opened is not None and now - opened[0] < self._window:
                start, first, count = opened
                if count == 0:
                    timer = threading.Timer(
                        start + self._window - now, self._summarise, (key, start)
                    )
                    timer.daemon = True
                    timer.start()
                self._open[key] = (start, first, count + 1)
                return False
            self._open[key] = (now, record, 0)
        if opened is not None:  # the window ended before its timer ran: its count goes first
            self._emit_summary(opened)
        return True

    def _summarise(self, key: tuple[str, int], start: float | None = None) -> None:
        with self._lock:
            opened = self._open.get(key)
            if opened is None or (start is not None and opened[0] != start):
                return
            del self._open[key]
        self._emit_summary(opened)

    def _emit_summary(self, opened: tuple[float, logging.LogRecord, int]) -> None:
        if opened[2] == 0:
            return
        _start, first, count = opened
        summary = logging.LogRecord(
            first.name,
            first.levelno,
            first.pathname,
            first.lineno,
            "%s (and %d more like it in %.0f s)",
            (first.getMessage(), count, self._window),
            None,
        )
        summary.repeated = count
        self._handler.handle(summary)

    def flush(self) -> None:
        """Logs the counts of every open window now (at exit)."""
        for key in list(self._open):
            self._summarise(key)


def configure(
    level: str,
    log_format: LogFormat,
    redactor: Redactor,
    stream: TextIO | None = None,
    repeat_window: float = REPEAT_WINDOW_SECONDS,
) -> RepeatLimiter:
    """Route every logger (librdkafka's included) through one scrubbed, rate-limited handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter = JsonFormatter(redactor) if log_format == "json" else TextFormatter(redactor)
    handler.setFormatter(formatter)
    limiter = RepeatLimiter(handler, repeat_window)
    handler.addFilter(limiter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Python's warnings and an uncaught exception become log lines too (JSON, scrubbed)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    return limiter


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("streamer").critical("uncaught exception", exc_info=(kind, value, tb))
