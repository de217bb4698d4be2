"""The baseline: what a user would write in an afternoon, run as its own process.

One confluent-kafka consumer, one `requests` POST per event, a synchronous commit after each
response. Correct (at-least-once, in order) and simple; it just does not batch. Prints one JSON
line: events, seconds and CPU seconds from the first message to the last commit.

    python -m tests.bench.baseline --bootstrap B --topic T --group G --url U --events N
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import psutil
import requests
from confluent_kafka import Consumer

from tests.fixtures.observe import process_cpu_seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--bootstrap", "--topic", "--group", "--url", "--workspace-id", "--api-key"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args(argv)

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.topic])
    session = requests.Session()
    session.auth = (args.workspace_id, args.api_key)
    session.headers["MOE-APPKEY"] = args.workspace_id
    url = args.url + "/v1/integrations/cohortsync"
    me = psutil.Process()
    done = 0
    started = cpu_started = 0.0
    while done < args.events:
        msg = consumer.poll(1.0)
        if msg is None or msg.error() is not None:
            continue
        if done == 0:
            started, cpu_started = time.monotonic(), process_cpu_seconds(me)
        event = json.loads(msg.value())
        body = {
            "action": "add_members" if event["action"] == "enter" else "remove_members",
            "partner": "baseline",
            "parameters": {
                "cohort_id": event["cohort_id"],
                "cohort_name": event["cohort_name"],
                "members": [{"uid": event["uid"]}],
            },
        }
        while session.post(url, json=body, timeout=30).status_code != 200:
            time.sleep(0.1)  # retry until accepted, like any careful afternoon script
        consumer.commit(message=msg, asynchronous=False)
        done += 1
    seconds, cpu = time.monotonic() - started, process_cpu_seconds(me) - cpu_started
    consumer.close()
    print(json.dumps({"events": done, "seconds": seconds, "cpu_seconds": cpu}))
    return 0



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
