"""The `cohort-streamer` command: one subcommand per job, each in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streamer.version import VERSION

# subcommand -> (module, help). Each module exposes add_arguments(parser) and run(args) -> int,
# so a job's options live beside its code.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("streamer.app", "run the streamer until SIGTERM/SIGINT"),
    "emulator": ("streamer.emulator.cli", "run the MoEngage Segments API emulator"),
    "replay": ("streamer.replay", "reset the consumer group's offsets to re-sync"),
    "segments": ("streamer.segments", "list, get, archive and unarchive MoEngage segments"),
    "demo": ("streamer.demo", "run the end-to-end demo on a local Kafka and the emulator"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cohort-streamer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
