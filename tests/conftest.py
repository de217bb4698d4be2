"""Shared fixtures: a real Kafka broker and the MoEngage emulator."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.emulator",
    "tests.fixtures.streamer",
    "tests.fixtures.hostile_api",
    "tests.fixtures.segments_cli",
    "tests.fixtures.files",
]
