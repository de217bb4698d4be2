"""librdkafka's own verdict on kafka.consumer and kafka.producer, asked before anything connects.

Only librdkafka knows its hundreds of properties, their ranges and the rules between them, so
the clients are built from the very settings the streamer runs with (source.consumer_settings,
dlq.producer_settings) minus the broker list, which keeps them from connecting, and dropped at
once. A refusal names the operator's key at fault: the first one librdkafka refuses on its own,
else the whole map (keys that only conflict together).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from streamer.config import ConfigError, KafkaConfig
from streamer.dlq import producer_settings
from streamer.source import consumer_settings

ClientMap = Mapping[str, str | int | float | bool]
# librdkafka warns that a client without brokers cannot connect: true, and meant here
_QUIET = logging.getLogger("streamer.kafkacheck")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_BROKER_LISTS = ("bootstrap.servers", "metadata.broker.list")


def check_kafka_clients(config: KafkaConfig) -> None:
    """Raise ConfigError naming the key if librdkafka would refuse the consumer or producer."""

    def consumer(user: ClientMap) -> None:
        settings = _offline(consumer_settings(config.model_copy(update={"consumer": user})))
        Consumer(settings).close()

    def producer(user: ClientMap) -> None:
        Producer(_offline(producer_settings(config.model_copy(update={"producer": user}))))

    _check("kafka.consumer", config.consumer, consumer)
    _check("kafka.producer", config.producer, producer)


def _check(section: str, user: ClientMap, build: Callable[[ClientMap], None]) -> None:
    reason = _refusal(build, user)
    if reason is None:
        return
    for key, value in user.items():
        alone = _refusal(build, {key: value})
        if alone is not None:
            raise ConfigError(f"{section}.{key}: librdkafka refuses it: {_explain(alone, user)}")
    raise ConfigError(
        f"{section}: librdkafka refuses these settings together: {_explain(reason, user)}"
    )


def _refusal(build: Callable[[ClientMap], None], user: ClientMap) -> str | None:
    """librdkafka's (or confluent-kafka's) reason for refusing the client, or None."""
    try:
        build(user)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        return error.str() if isinstance(error, KafkaError) else str(exc)
    except (ValueError, TypeError) as exc:  # confluent-kafka's own checks (callbacks, types)
        return str(exc)
    return None


def _offline(settings: dict[str, Any]) -> dict[str, Any]:
    """The same settings without brokers: the client is built and checked, and connects nowhere."""
    quiet = {key: value for key, value in settings.items() if key not in _BROKER_LISTS}
    quiet["logger"] = _QUIET
    return quiet


def _explain(reason: str, user: ClientMap) -> str:
    """librdkafka's reason on one line, where to look up the property, and no string value:
    librdkafka quotes a refused one, and it may be a secret pasted into the wrong key."""
    for value in user.values():
        if isinstance(value, str) and value:
            reason = reason.replace(f'"{value}"', '"..."')
    return f"{' '.join(reason.split())} (see librdkafka's CONFIGURATION.md)"
