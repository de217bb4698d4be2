"""A Python module run as a child process, asked one question at a time through a pipe.

For native code that may abort the process it runs in. librdkafka's coordinator-targeted admin
requests (DescribeConsumerGroups, ListConsumerGroupOffsets) fail an assertion and abort() when
the coordinator's connection drops mid-request (librdkafka #4605; the fix, #5397, is not in a
release as of 2.16). In the service that would end a replica over an optional read; in a child
it ends the child: the call raises ChildDied, and the next call starts a new child.

The child is a fresh interpreter (`python -m module`), never a fork: forking a process whose
librdkafka threads hold locks is unsafe, and a fresh one imports only what it needs. Its stdin
carries the questions and its stdout the answers, each a pickled object; it ends at EOF on
stdin, so a parent killed with -9 leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

# a fresh interpreter importing confluent-kafka takes ~0.3 s; allow for a loaded machine
STARTUP_SECONDS = 10.0
KILL_WAIT_SECONDS = 5.0
DYING_SECONDS = 1.0  # a child whose pipe closed is exiting: its own exit code tells why
LAST_WORDS_BYTES = 2048  # of a dead child's stderr, for the error that reports it


class ChildDied(RuntimeError):
    """The child ended (crashed) while answering; the next call starts a new one."""


class IsolatedChild:
    """Runs `python -m <module>`; `ask` sends one object and returns the child's answer."""

    def __init__(self, module: str, first: object, startup_seconds: float = STARTUP_SECONDS):
        self._module = module
        self._first = first  # sent once to every new child (its settings): not on argv
        self._startup = startup_seconds
        self._lock = threading.Lock()  # one question at a time
        self._process: subprocess.Popen[bytes] | None = None
        self._ask: Connection | None = None
        self._answer: Connection | None = None
        self._closed = False
        self.starts = 0  # children started, the first included

    def ask(self, question: object, timeout: float) -> object:
        """The child's answer. Raises TimeoutError (the child is killed), ChildDied."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._module}: closed")
            timeout += self._startup if self._process is None else 0.0
            try:
                ask, answer = self._running()
                ask.send(question)
                if answer.poll(timeout):  # True at EOF too: then recv raises
                    return answer.recv()
            except (EOFError, OSError):  # OSError: a broken pipe to a child that is gone
                ended = self._stop(grace=DYING_SECONDS)
                raise ChildDied(f"{self._module} ended, {ended}") from None
            self._stop()
            raise TimeoutError(f"{self._module} did not answer within {timeout:.1f} s")

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
            self._start()
        assert self._ask is not None and self._answer is not None
        return self._ask, self._answer

    def _start(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", self._module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # read when it ends: why it ended (an assertion, a trace)
            close_fds=True,
        )
        assert process.stdin is not None and process.stdout is not None
        self._process = process
        # the Connections own the pipes' descriptors from here on
        self._ask = Connection(os.dup(process.stdin.fileno()), readable=False)
        self._answer = Connection(os.dup(process.stdout.fileno()), writable=False)
        process.stdin.close()
        process.stdout.close()
        self.starts += 1
        self._ask.send(self._first)

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
        code = process.wait(KILL_WAIT_SECONDS)
        assert process.stderr is not None
        with process.stderr:
            last = process.stderr.read()[-LAST_WORDS_BYTES:].decode(errors="replace").strip()
        how = f"exit code {code}" + (f" ({signal.Signals(-code).name})" if code < 0 else "")
        return f"{how}: {last.splitlines()[-1]}" if last else how


def serve_stdio() -> tuple[object, Connection, Connection]:
    """In the child: (the first object, questions, answers). Stdout becomes stderr, so a stray
    print cannot corrupt the answers."""
    questions = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    return questions.recv(), questions, answers
