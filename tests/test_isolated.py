"""IsolatedChild: a child that aborts, hangs or is orphaned never takes its parent with it."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from streamer.isolated import RESTART_BACKOFF_SECONDS, ChildDied, IsolatedChild
from tests.fixtures.observe import wait_for

ECHO = "tests.fixtures.child_echo"


class Clock:
    """Time that moves only when a test says so (the restart back-off's)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def child(clock: Clock) -> Iterator[IsolatedChild]:
    isolated = IsolatedChild(ECHO, {"secret": "s3cr3t"}, clock=clock)
    yield isolated
    isolated.close()


def _pid(answer: object) -> int:
    assert isinstance(answer, tuple)
    return int(answer[2])


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_a_child_answers_with_what_it_was_given_first(child: IsolatedChild) -> None:
    assert child.ask("one", 5)[:2] == ({"secret": "s3cr3t"}, "one")  # type: ignore[index]
    assert child.ask("two", 5)[:2] == ({"secret": "s3cr3t"}, "two")  # type: ignore[index]
    assert child.starts == 1


def test_what_a_child_is_given_stays_off_its_command_line_and_out_of_its_environment(
    child: IsolatedChild, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOENGAGE_API_KEY", "the-api-key")
    monkeypatch.setenv("MOENGAGE_API_KEY_FILE", "/run/secrets/key")
    pid = _pid(child.ask("one", 5))
    assert psutil.Process(pid).cmdline()[1:] == ["-m", ECHO]
    keys = child.ask("env", 5)
    assert isinstance(keys, list) and "PATH" in keys
    assert not [k for k in keys if k.startswith("MOENGAGE_")]


def test_a_child_imports_what_its_parent_does_from_any_working_directory(
    child: IsolatedChild, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # tests.fixtures is importable here only through sys.path
    assert child.ask("one", 5)[1] == "one"  # type: ignore[index]


@pytest.mark.parametrize("crash", ["abort", "sigkill", "sigsegv"])
def test_a_child_that_dies_fails_one_question_and_a_new_one_answers_after_the_back_off(
    child: IsolatedChild, clock: Clock, crash: str
) -> None:
    first = _pid(child.ask("one", 5))
    if crash == "abort":
        with pytest.raises(ChildDied, match=f"exit code {-signal.SIGABRT} \\(SIGABRT\\)"):
            child.ask("abort", 5)
    else:
        os.kill(first, signal.SIGKILL if crash == "sigkill" else signal.SIGSEGV)
        wait_for(lambda: _gone(first), 5, "the child dies")
        with pytest.raises(ChildDied):
            child.ask("two", 5)
    assert not psutil.pid_exists(first)  # reaped, no zombie left
    with pytest.raises(ChildDied, match="next start in 1 s"):
        child.ask("too soon", 5)
    clock.now += RESTART_BACKOFF_SECONDS[0]
    second = _pid(child.ask("three", 5))
    assert second != first and child.starts == 2


def test_a_child_that_dies_says_why_in_the_error(child: IsolatedChild) -> None:
    with pytest.raises(ChildDied, match=r"exit code 1: RuntimeError: the child's last words"):
        child.ask("raise", 5)


def test_children_that_keep_dying_are_restarted_ever_more_slowly_until_one_answers(
    child: IsolatedChild, clock: Clock
) -> None:
    waits = []
    for _ in range(8):
        with pytest.raises(ChildDied):
            child.ask("abort", 5)
        with pytest.raises(ChildDied, match=r"next start in (\d+) s") as refused:
            child.ask("too soon", 5)
        waits.append(int(refused.value.args[0].rsplit(" ", 2)[-2]))
        clock.now += waits[-1]
    low, high = RESTART_BACKOFF_SECONDS
    assert waits == [min(high, low * 2**n) for n in range(8)]  # 1, 2, 4 ... 60
    assert child.ask("one", 5)[1] == "one"  # type: ignore[index]
    with pytest.raises(ChildDied):
        child.ask("abort", 5)
    with pytest.raises(ChildDied, match="next start in 1 s"):  # an answer reset the back-off
        child.ask("too soon", 5)


def test_a_module_that_cannot_start_is_an_error_in_the_log_not_a_crash(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    broken = IsolatedChild("tests.fixtures.no_such_child", None, clock=clock)
    try:
        missing = re.escape("No module named tests.fixtures.no_such_child")
        with (
            caplog.at_level(logging.ERROR, "streamer.isolated"),
            pytest.raises(ChildDied, match=missing),
        ):
            broken.ask("one", 5)
        assert "ended before its first answer (1 in a row)" in caplog.text
    finally:
        broken.close()


def test_a_child_that_hangs_is_killed_at_the_deadline_and_replaced(
    child: IsolatedChild, clock: Clock
) -> None:
    first = _pid(child.ask("one", 5))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"did not answer within 0\.5 s; exit code -9"):
        child.ask("hang", 0.5)
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(first)
    clock.now += RESTART_BACKOFF_SECONDS[0]
    assert _pid(child.ask("two", 5)) != first


def test_a_stray_print_in_the_child_does_not_corrupt_the_answers(child: IsolatedChild) -> None:
    assert child.ask("print", 5)[1] == "print"  # type: ignore[index]
    assert child.ask("after", 5)[1] == "after"  # type: ignore[index]


def test_close_ends_a_child_that_is_answering_and_later_questions_fail(
    child: IsolatedChild,
) -> None:
    pid = _pid(child.ask("one", 5))
    outcome: list[BaseException] = []

    def ask_hanging() -> None:
        try:
            child.ask("hang", 60)
        except BaseException as exc:
            outcome.append(exc)

    asker = threading.Thread(target=ask_hanging)
    asker.start()
    wait_for(lambda: child._lock.locked(), 5, "the question in flight")
    time.sleep(0.2)  # sent: the child is hanging on it
    child.close()
    asker.join(10)
    assert not asker.is_alive() and isinstance(outcome[0], ChildDied), outcome
    assert not psutil.pid_exists(pid)
    child.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        child.ask("again", 5)


def test_a_child_ends_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time
                from streamer.isolated import IsolatedChild
                child = IsolatedChild({ECHO!r}, None)
                print(child.ask("one", 10)[2], flush=True)
                time.sleep(3600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert psutil.pid_exists(pid)
    parent.kill()
    parent.wait()
    wait_for(lambda: _gone(pid), 10, "the orphan exits")
