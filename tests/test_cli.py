"""`cohort-streamer`'s command line: `run` loads none of the development rig (issue 15, item 3).

Each case runs in a fresh interpreter (imports are per process) from the repository root, then
lists the `streamer` modules it loaded. The development subpackage (local Kafka, demo, sample
generator, process harness) and the emulator are for developers and users' own test setups;
the streamer a pod runs must not pay their import time or carry their code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import SUBCOMMANDS

pytestmark = pytest.mark.slow  # each case starts a fresh interpreter: seconds each

ROOT = Path(__file__).resolve().parents[1]
NOT_FOR_RUN = ("streamer.dev", "streamer.emulator")
DEV_MODULES = ("devkafka", "demo", "sample", "harness")

# the loaded modules are printed last, whatever the command printed or how it exited
PRINT_MODULES = """
import json, sys
print(json.dumps(sorted(name for name in sys.modules if name.startswith("streamer"))))
"""
RUN_CLI = """
from streamer.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
"""


def loaded_modules(code: str, env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The `streamer` modules `code` loaded, and what it wrote on stderr."""
    result = subprocess.run(
        [sys.executable, "-c", code + PRINT_MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules, result.stderr


def is_rig(module: str) -> bool:
    return any(module == rig or module.startswith(rig + ".") for rig in NOT_FOR_RUN)


@pytest.mark.parametrize(
    ("code", "stderr"),
    [
        ("import streamer.app", ""),
        (RUN_CLI.format(argv=["run", "--help"]), ""),
        # the real start-up path as far as its config check (no credentials here)
        (
            RUN_CLI.format(argv=["run", "--config", str(ROOT / "config" / "streamer.yaml")]),
            "cohort-streamer: config error: MOENGAGE_WORKSPACE_ID",
        ),
    ],
    ids=["import-app", "run-help", "run-until-config-error"],
)
def test_run_imports_none_of_the_development_rig(code: str, stderr: str) -> None:
    modules, written = loaded_modules(code, env={"PATH": "/usr/bin:/bin"})
    assert written.startswith(stderr)
    assert "streamer.app" in modules
    assert [name for name in modules if is_rig(name)] == []


def test_the_rig_is_where_the_check_looks() -> None:
    """The check above is not vacuous: the rig's modules live under streamer.dev and import."""
    modules, _ = loaded_modules("; ".join(f"import streamer.dev.{name}" for name in DEV_MODULES))
    assert {f"streamer.dev.{name}" for name in DEV_MODULES} <= set(modules)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_every_subcommand_loads_lazily_and_parses(command: str) -> None:
    modules, _ = loaded_modules(RUN_CLI.format(argv=[command, "--help"]))
    module_name = SUBCOMMANDS[command][0]
    assert module_name in modules
    others = {name for other, (name, _) in SUBCOMMANDS.items() if other != command}
    assert others.isdisjoint(modules)
