"""The start-up check of the DLQ topic: it exists, this client may write to it, and its limit.

Run once at start, like the source topics' check in source.py: a DLQ that cannot take a letter
would hold the first refused event's partition from the first minute, so it is a StartupError
(exit 3). Later trouble with the topic is dlq.py's to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

# typed where they are defined; confluent_kafka.admin re-exports them implicitly
from confluent_kafka.admin._acl import AclOperation
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._resource import ResourceType

from streamer.source import StartupError

log = logging.getLogger(__name__)


def check_topic(config: Mapping[str, Any], topic: str, timeout: float) -> int | None:
    """At start: the DLQ topic exists and this client may write to it, or StartupError.

    Returns the topic's max.message.bytes, or None when the broker does not tell us.
    """
    admin = AdminClient({**config, "enable.idempotence": False})  # an admin needs no producer id
    try:
        found = admin.describe_topics(
            TopicCollection([topic]), include_authorized_operations=True, request_timeout=timeout
        )[topic]
        description = found.result(timeout=timeout + 5)
    except TimeoutError:
        raise StartupError(f"kafka.dlq_topic: no answer about {topic} in {timeout:g}s") from None
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise StartupError(f"kafka.dlq_topic: {topic} does not exist on the cluster") from None
        raise StartupError(f"kafka.dlq_topic: cannot use {topic}: {err.str()}") from None
    allowed = description.authorized_operations  # None: the broker does not say
    if allowed is not None and not {AclOperation.WRITE, AclOperation.ALL} & set(allowed):
        raise StartupError(
            f"kafka.dlq_topic: this client may not write to {topic} (grant it WRITE on the topic)"
        )
    return _max_message_bytes(admin, topic, timeout)


def _max_message_bytes(admin: Any, topic: str, timeout: float) -> int | None:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource], request_timeout=timeout)[resource]
        return int(entries.result(timeout=timeout + 5)["max.message.bytes"].value)
    except (KafkaException, TimeoutError, KeyError, ValueError) as exc:
        log.warning(
            "cannot read max.message.bytes of %s (%s): dead letters are cut to the producer's "
            "limit, and further if the topic refuses them",
            topic,
            exc,
        )
        return None
