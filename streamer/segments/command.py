"""What every `segments` command returns, so the CLI prints and exits the same way for all."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .api import SegmentsApi

OK, API_ERROR, USAGE = 0, 1, 2  # exit codes


class UsageError(Exception):
    """Options or an input file that cannot make a request: one line, exit 2."""


@dataclass(frozen=True, slots=True)
class Outcome:
    doc: Any  # printed with --json
    text: str  # printed otherwise
    code: int = OK


Handler = Callable[[argparse.Namespace, SegmentsApi], Awaitable[Outcome]]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """`--json` after the command too; SUPPRESS keeps a `--json` given before it."""
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
    )
