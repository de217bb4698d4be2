"""A Python module run as a child process, asked one question at a time through a pipe.

For native code that may abort the process it runs in. librdkafka's coordinator-targeted admin
requests (DescribeConsumerGroups, ListConsumerGroupOffsets) fail an assertion and abort() when
the coordinator's connection drops mid-request (librdkafka #4605; the fix, #5397, is not in a
release as of 2.16). In the service that would end a replica over an optional read; in a child
it ends the child: the call raises ChildDied, and a later call starts a new child.

The child is a fresh interpreter (`python -m module`, the parent's sys.path), never a fork:
forking a process whose librdkafka threads hold locks is unsafe, and a fresh one imports only
what it needs. Its stdin carries the questions and its stdout the answers, each a pickled
object; it ends at EOF on stdin, so a parent killed with -9 leaves no orphan behind. It runs in
a session of its own (a signal to the parent's process group is for the parent to handle), and
without the parent's MoEngage credentials in its environment (it only talks to Kafka).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import IO

log = logging.getLogger(__name__)

# a fresh interpreter importing confluent-kafka takes ~0.3 s; allow for a loaded machine
STARTUP_SECONDS = 10.0
KILL_WAIT_SECONDS = 5.0
DYING_SECONDS = 1.0  # a child whose pipe closed is exiting: its own exit code tells why
LAST_WORDS_LINES = 20  # of a child's stderr, kept for the error that reports its end
# after a child ends, the next starts no sooner than this, doubling while they keep ending
# without an answer: a child that cannot start must not cost an interpreter every second
RESTART_BACKOFF_SECONDS = (1.0, 60.0)
MAX_DOUBLINGS = 20  # far past the cap; keeps 2 ** n a small float after days of deaths
PRIVATE_ENV_PREFIXES = ("MOENGAGE_",)


class ChildDied(RuntimeError):
    """The child ended (crashed) while answering, or a new one may not start yet."""


class IsolatedChild:
    """Runs `python -m <module>`; `ask` sends one object and returns the child's answer."""

    def __init__(
        self,
        module: str,
        first: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._module = module
        self._first = first  # sent once to every new child (its settings): not on argv
        self._clock = clock
        self._lock = threading.Lock()  # one question at a time
        self._process: subprocess.Popen[bytes] | None = None
        self._ask: Connection | None = None
        self._answer: Connection | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=LAST_WORDS_LINES)
        self._drain: threading.Thread | None = None
        self._closed = False
        self._deaths = 0  # children ended in a row without an answer
        self._answered = False  # the running child has answered once
        self._next_start = 0.0
        self.starts = 0  # children started, the first included

    def ask(self, question: object, timeout: float) -> object:
        """The child's answer. Raises TimeoutError (the child is killed), ChildDied."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._module}: closed")
            timeout += STARTUP_SECONDS if self._process is None else 0.0
            try:
                ask, answer = self._running()
                ask.send(question)
                if answer.poll(timeout):  # True at EOF too: then recv raises
                    reply = answer.recv()
                    self._deaths, self._answered = 0, True
                    return reply
            except (EOFError, OSError) as exc:  # OSError: a broken pipe, a failed start
                raise ChildDied(f"{self._module} ended, {self._ended(exc)}") from None
            raise TimeoutError(
                f"{self._module} did not answer within {timeout:.1f} s; {self._ended(None)}"
            )

    def close(self) -> None:
        """Ends the child now, even while a question waits (that `ask` raises). Idempotent."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._stop()
            finally:
                self._lock.release()
        elif (process := self._process) is not None:
            process.kill()  # the waiting `ask` sees the pipe close and cleans up itself

    def _running(self) -> tuple[Connection, Connection]:
        if self._ask is None or self._answer is None:
            wait = self._next_start - self._clock()
            if wait > 0:
                raise ChildDied(
                    f"{self._module}: {self._deaths} ended in a row; next start in {wait:.0f} s"
                )
            self._start()
        if self._closed:  # closed while this child started: close() could not see it
            self._stop()
            raise RuntimeError(f"{self._module}: closed")
        assert self._ask is not None and self._answer is not None
        return self._ask, self._answer

    def _start(self) -> None:
        self._stderr.clear()
        self._answered = False
        process = subprocess.Popen(
            [sys.executable, "-m", self._module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # its last lines say why it ended (an assertion, a trace)
            close_fds=True,
            start_new_session=True,
            env=_child_environment(),
        )
        assert process.stdin and process.stdout and process.stderr
        self._process = process
        # drained as it comes: a child writing to a full pipe would block on it
        self._drain = threading.Thread(
            target=_keep_lines, args=(process.stderr, self._stderr), daemon=True
        )
        self._drain.start()
        # the Connections own the pipes' descriptors from here on
        self._ask = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._answer = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        self.starts += 1
        self._ask.send(self._first)

    def _ended(self, cause: BaseException | None) -> str:
        """Stops the child after a failure and says how it ended; the next start backs off."""
        answered = self._answered
        ended = self._stop(grace=DYING_SECONDS if cause is not None else 0.0)
        if ended == "not running" and cause is not None:
            ended = f"could not start: {cause!r}"
        self._deaths += 1
        low, high = RESTART_BACKOFF_SECONDS
        doublings = min(self._deaths - 1, MAX_DOUBLINGS)
        self._next_start = self._clock() + min(high, low * 2**doublings)
        if not answered and not self._closed:  # it may never work (a broken install): say so
            log.error(
                "%s ended before its first answer (%d in a row): %s",
                self._module,
                self._deaths,
                ended,
            )
        return ended

    def _stop(self, grace: float = 0.0) -> str:
        """Ends the child (after `grace` to end by itself); how it ended, with its last words
        on stderr."""
        process, self._process = self._process, None
        for end in (self._ask, self._answer):
            if end is not None:
                end.close()
        self._ask = self._answer = None
        if process is None:
            return "not running"
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
        if process.poll() is None:
            process.kill()  # the child only reads: nothing of its own to finish
        try:
            code = process.wait(KILL_WAIT_SECONDS)
        except subprocess.TimeoutExpired:  # stuck in the kernel: reaped by a later poll()
            return f"still ending {KILL_WAIT_SECONDS:.0f} s after SIGKILL"
        if self._drain is not None:
            self._drain.join(KILL_WAIT_SECONDS)
        how = f"exit code {code}{_signal_name(code)}"
        return f"{how}: {self._stderr[-1]}" if self._stderr else how


def _keep_lines(stream: IO[bytes], lines: collections.deque[str]) -> None:
    with stream:
        for line in stream:
            if text := line.decode(errors="replace").strip():
                lines.append(text)


def _signal_name(code: int) -> str:
    if code >= 0:
        return ""
    try:
        return f" ({signal.Signals(-code).name})"
    except ValueError:  # a real-time signal has no name
        return f" (signal {-code})"


def _child_environment() -> dict[str, str]:
    """The parent's environment without its private keys, with its sys.path: the child
    imports what the parent does, from any working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join(path or os.getcwd() for path in sys.path)
    return env


def serve_stdio() -> tuple[object, Connection, Connection]:
    """In the child: (the first object, questions, answers). Stdout becomes stderr, so a stray
    print cannot corrupt the answers."""
    questions = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    return questions.recv(), questions, answers
