"""`python -m tests.bench.micro`: the per-event path alone, in one process, without Kafka.

Real confluent_kafka.Message objects from the benchmark's workload go through Pipeline.ingest,
then every cohort is sealed whole and settled the way a delivery settles accepted bodies. CPU
time per event of each part (best of --repeat): the figure to compare before and after a change
to decode, batch, seal, payload or settle, without the noise of a broker on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

from confluent_kafka import Message

from streamer.batch import Take
from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.offsets import TopicPartition
from streamer.pipeline import Pipeline
from streamer.seal import seal
from tests.bench.workload import generate_backlog

TOPIC = "cohort-membership"
PARTITIONS = 12
BATCH = 5000


def messages(events: int, cohorts: int, users: int) -> list[Message]:
    """The workload's log as consumed messages, in runs of one partition as librdkafka hands
    them over."""
    log = generate_backlog(events, cohorts, users, seed=7)
    out = [
        Message(topic=TOPIC, partition=i % PARTITIONS, offset=i, key=k, value=v, timestamp=(1, 0))
        for i, (k, v) in enumerate(zip(log.keys, log.values, strict=True))
    ]
    out.sort(key=lambda m: m.partition())
    return out


def pipeline() -> Pipeline:
    settings = Settings.model_validate(
        {"kafka": {"bootstrap_servers": "unused:9092", "dlq_topic": "dlq"},
         "moengage": {"base_url": "http://unused"}}
    )  # fmt: skip
    # ingest, seal and settle never touch the sender, limiter or DLQ writer
    p = Pipeline(settings, None, None, None, Metrics())  # type: ignore[arg-type]
    partitions: list[TopicPartition] = [(TOPIC, n) for n in range(PARTITIONS)]
    p.tracker.assign(partitions)
    return p


def measure(log: list[Message]) -> tuple[float, float]:
    """(ingest, seal + settle) CPU seconds for one pass over `log`."""
    p = pipeline()
    started = time.process_time()
    for i in range(0, len(log), BATCH):
        p.ingest(log[i : i + BATCH])
    ingested = time.process_time()
    for cohort in p.cohorts.buffers():
        if cohort.open is None:
            continue
        shipment = seal(cohort.open, "cohort-streamer", 128_000, Take.EVERYTHING)
        for parcel in shipment.parcels:
            p._settle(parcel.members)
            ages = parcel.members.ages(time.time() * 1000, p._metrics.ack_latency.bounds)
            p._metrics.ack_latency.observe(*ages)
    assert p.tracker.pending_events() == 0, "every event settled"
    return ingested - started, time.process_time() - ingested


async def main(events: int, repeat: int) -> dict[str, float]:
    log = messages(events, 50, 500_000)
    gc.collect()
    gc.freeze()
    gc.set_threshold(1_000_000, 10, 10)  # as the streamer runs (gctune.tune_gc)
    runs = [measure(log) for _ in range(repeat)]
    best_ingest = min(r[0] for r in runs) / events * 1e6
    best_seal = min(r[1] for r in runs) / events * 1e6
    return {"ingest_us_per_event": best_ingest, "seal_settle_us_per_event": best_seal}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.bench.micro", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(main(args.events, args.repeat))
    print(
        f"ingest {result['ingest_us_per_event']:.2f} µs/event, "
        f"seal + settle {result['seal_settle_us_per_event']:.2f} µs/event "
        f"(best of {args.repeat}, {args.events:,} events)"
    )
