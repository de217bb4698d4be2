"""The version of the installed package (its metadata, i.e. pyproject.toml), said once for
`--version`, the first log line and the build-info gauge."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("cohort-streamer")
except PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0+unknown"

PYTHON_VERSION = platform.python_version()
