"""The CSV rules of §3.1, as one pure function over a downloaded file.

A file is one column, one value per line. Our reading where §3.1 leaves the outcome open: a
file that breaks a rule is refused whole (callback status 400 naming the first bad line)
rather than having bad rows skipped, because the rules are stated as what a file must be:
- a comma anywhere (a second column or a trailing comma), a quote, or a character outside
  letters, digits and `_ - . @ + :` (`a#bc`) -> refused;
- an empty line (an empty row), except the one end-of-file newline -> refused;
- a value seen twice -> refused;
- for attribute type `double` (v1: `numeric`), a value that is not a number -> refused.
Line ends may be LF or CRLF; a UTF-8 byte order mark is ignored. Every value is taken to
identify exactly one existing user (the emulator keeps no user base).
"""

from __future__ import annotations

import re

_VALUE = re.compile(r"[A-Za-z0-9_.@+:-]+")
NUMERIC_TYPES = frozenset({"double", "numeric"})


class BadFile(Exception):
    """Why the file is refused, as the callback's error_message says it."""


def parse_csv(data: bytes, attribute_type: str) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadFile("File is not UTF-8 text.") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    if not lines:
        raise BadFile("File is empty.")
    seen: set[str] = set()
    for number, value in enumerate(lines, start=1):
        _check_value(value, number, attribute_type, seen)
        seen.add(value)
    return lines


def _check_value(value: str, number: int, attribute_type: str, seen: set[str]) -> None:
    if value == "":
        raise BadFile(f"Empty row at line {number}.")
    if "," in value:
        raise BadFile(f"More than one column (a comma) at line {number}.")
    if not _VALUE.fullmatch(value):
        raise BadFile(f"Quotes or special characters at line {number}.")
    if value in seen:
        raise BadFile(f"Duplicate value at line {number}.")
    if attribute_type in NUMERIC_TYPES and not _is_number(value):
        raise BadFile(f"Not a number at line {number}.")


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
