"""The consume-only floor: a bare consumer reading the catch-up log, doing nothing with it.

Same librdkafka settings as the streamer (read from the streamer's own config file through
streamer.source.consumer_settings), same consume(batch, 0.1) loop; each message only has its
error() checked and value() touched, as the streamer must do at least that. Its CPU per event is
what librdkafka and confluent-kafka's per-message Python objects cost, which the streamer cannot
avoid. Prints one JSON line: events, seconds and CPU seconds from the first batch to the last.

    python -m tests.bench.floor --config streamer.yaml --group G --events N
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil
from confluent_kafka import Consumer

from streamer.config import load_settings
from streamer.source import consumer_settings
from tests.fixtures.observe import process_cpu_seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True, help="the streamer's config file")
    parser.add_argument("--group", required=True, help="a fresh group: read from the start")
    parser.add_argument("--events", type=int, required=True, help="messages the topic holds")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)

    # load_settings also applies STREAMER__* variables, as the streamer's own start does
    kafka = load_settings(args.config).kafka.model_copy(update={"group_id": args.group})
    consumer = Consumer(consumer_settings(kafka))
    consumer.subscribe(list(kafka.topics))
    me = psutil.Process()
    deadline = time.monotonic() + args.timeout
    done = 0
    started = cpu_started = 0.0
    while done < args.events:
        if not done:
            # taken before every call until data comes: the start includes the first fetch, as
            # the streamer's does (its last look before the first consumed batch)
            started, cpu_started = time.monotonic(), process_cpu_seconds(me)
        if time.monotonic() > deadline:
            raise SystemExit(f"floor: read {done} of {args.events} in {args.timeout:g}s")
        for msg in consumer.consume(kafka.consume_batch_size, 0.1):
            if msg.error() is None:
                msg.value()
                done += 1
    seconds, cpu = time.monotonic() - started, process_cpu_seconds(me) - cpu_started
    consumer.close()
    print(json.dumps({"events": done, "seconds": seconds, "cpu_seconds": cpu}))
    return 0



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
