"""IsolatedChild: a child that aborts, hangs or is orphaned never takes its parent with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

from streamer.isolated import ChildDied, IsolatedChild
from tests.fixtures.observe import wait_for

ECHO = "tests.fixtures.child_echo"


@pytest.fixture
def child() -> Iterator[IsolatedChild]:
    isolated = IsolatedChild(ECHO, {"secret": "s3cr3t"})
    yield isolated
    isolated.close()


def _pid(answer: object) -> int:
    assert isinstance(answer, tuple)
    return int(answer[2])


def test_a_child_answers_with_what_it_was_given_first(child: IsolatedChild) -> None:
    assert child.ask("one", 5)[:2] == ({"secret": "s3cr3t"}, "one")  # type: ignore[index]
    assert child.ask("two", 5)[:2] == ({"secret": "s3cr3t"}, "two")  # type: ignore[index]
    assert child.starts == 1


def test_what_a_child_is_given_stays_off_its_command_line(child: IsolatedChild) -> None:
    pid = _pid(child.ask("one", 5))
    assert psutil.Process(pid).cmdline()[1:] == ["-m", ECHO]


@pytest.mark.parametrize("crash", ["abort", "sigkill", "sigsegv"])
def test_a_child_that_dies_fails_one_question_and_a_new_one_answers_the_next(
    child: IsolatedChild, crash: str
) -> None:
    first = _pid(child.ask("one", 5))
    if crash == "abort":
        with pytest.raises(ChildDied, match=f"exit code {-signal.SIGABRT}"):
            child.ask("abort", 5)
    else:
        os.kill(first, signal.SIGKILL if crash == "sigkill" else signal.SIGSEGV)
        wait_for(lambda: not psutil.pid_exists(first) or _zombie(first), 5, "the child dies")
        with pytest.raises(ChildDied):
            child.ask("two", 5)
    second = _pid(child.ask("three", 5))
    assert second != first and child.starts == 2
    assert not psutil.pid_exists(first)  # reaped, no zombie left


def _zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_a_child_that_dies_says_why_in_the_error(child: IsolatedChild) -> None:
    with pytest.raises(ChildDied, match=r"exit code 1: RuntimeError: the child's last words"):
        child.ask("raise", 5)


def test_a_child_that_hangs_is_killed_at_the_deadline_and_replaced(child: IsolatedChild) -> None:
    first = _pid(child.ask("one", 5))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        child.ask("hang", 0.5)
    assert time.monotonic() - started < 5
    assert not psutil.pid_exists(first)
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
    time.sleep(0.3)
    child.close()
    asker.join(10)
    assert not asker.is_alive() and isinstance(outcome[0], ChildDied)
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
    wait_for(lambda: not psutil.pid_exists(pid) or _zombie(pid), 10, "the orphan exits")
