"""`python -m streamer.emulator --workspace-id W --api-key K ...` (same flags as the CLI)."""

import argparse
import logging
import sys

from .cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m streamer.emulator")
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
