"""The development rig: what the demo, the tests and the benchmark use, never `cohort-streamer run`.

devkafka provisions a local Kafka, sample generates event logs with their expected state, harness
runs and observes the real streamer in a subprocess, demo ties them together (`make demo`). They
live apart so the runtime's import closure stays small (tests/test_cli.py checks it).
"""
