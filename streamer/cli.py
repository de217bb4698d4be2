"""The `cohort-streamer` command: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

from streamer.version import VERSION

# subcommand -> (module, help). Each module exposes add_arguments(parser) and run(args) -> int,
# so a job's options live beside its code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("streamer.app", "run the streamer until SIGTERM/SIGINT"),
    "emulator": ("streamer.emulator.cli", "run the MoEngage Segments API emulator"),
    "replay": ("streamer.replay", "reset the consumer group's offsets to re-sync"),
    "segments": ("streamer.segments", "MoEngage segments: filter, file, as code, callbacks"),
    "demo": ("streamer.dev.demo", "run the end-to-end demo on a local Kafka and the emulator"),
}


def build_parser(load: Collection[str] = SUBCOMMANDS.keys()) -> argparse.ArgumentParser:
    """Every subcommand is listed; only those in `load` are imported (their options and handler).

    Importing lazily keeps `run` from loading the emulator, the demo and the development rig:
    start-up CPU on every pod restart, and less code in the running process.
    """
    parser = argparse.ArgumentParser(prog="cohort-streamer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name in load:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(handler=module.run)
    return parser


def named_command(argv: Sequence[str]) -> str | None:
    """The subcommand argv names: its first word that is not an option (the top level takes none
    with a value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    # an unknown or missing command loads nothing: argparse then names the valid choices
    command = named_command(words)
    args = build_parser(load=[command] if command in SUBCOMMANDS else []).parse_args(words)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
