"""The performance benchmark (issue 7): `python -m tests.bench.run` (`make bench`).

Runs the real `cohort-streamer run` as a subprocess against a local Kafka and the emulator (each
in its own process, so CPU accounting is the streamer's alone) and measures catch-up throughput
and CPU per event, a naive baseline, API efficiency under the real budget, event-to-ack latency
and peak RSS. Results go to tests/bench/results/ (latest.json, latest.md, latest.png).
"""
