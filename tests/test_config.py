"""streamer/config.py: settings from YAML + environment, credentials from env or *_FILE."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from annotated_types import Le
from confluent_kafka import Consumer, KafkaException
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from streamer.app import Streamer
from streamer.config import (
    MAX_CONSUME_BATCH,
    MAX_QUEUED_KBYTES,
    RESERVED_CONSUMER_KEYS,
    RESERVED_PRODUCER_KEYS,
    ConfigError,
    Credentials,
    MoEngageConfig,
    Settings,
    load_credentials,
    load_settings,
)
from streamer.health import listen
from streamer.kafkacheck import check_kafka_clients

MINIMAL: dict[str, Any] = {"kafka": {"bootstrap_servers": "k:9092", "dlq_topic": "dlq"}}
API_KEY = "s3cr3t-API-key-value"
REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data: Any, name: str = "streamer.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def merged(**sections: dict[str, Any]) -> dict[str, Any]:
    data = {"kafka": dict(MINIMAL["kafka"])}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def load(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> Settings:
    return load_settings(write(tmp_path, data), environ=env or {})


def config_error(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, data, env)
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    return message


def validation_error(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> str:
    """The one line of the first check (model, then librdkafka) that refuses the config."""
    with pytest.raises(ConfigError) as info:
        check_kafka_clients(load(tmp_path, data, env).kafka)
    message = str(info.value)
    assert "\n" not in message, "a config error is one line"
    return message


# --- defaults ---


def test_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, MINIMAL)
    assert s.kafka.bootstrap_servers == "k:9092"
    assert s.kafka.dlq_topic == "dlq"
    assert s.kafka.group_id == "cohort-streamer"
    assert s.kafka.topics == ["cohort-membership"]
    assert s.kafka.consumer == {}
    assert s.moengage.rate_limit_per_minute == 300
    assert s.moengage.rate_window_seconds == 60.0
    assert s.moengage.max_payload_bytes == 128000
    assert s.moengage.url == "https://api-01.moengage.com/v1/integrations/cohortsync"
    assert s.batching.linger_ms == 1000
    assert s.batching.low_water_events < s.batching.high_water_events
    assert s.events.action_field == "action"
    assert s.events.enter_actions == ["enter"]
    assert s.events.exit_actions == ["exit"]
    assert s.deadlines.shutdown_flush_seconds > 0
    assert s.deadlines.revoke_flush_seconds > 0
    assert s.moengage.retry_after_cap_seconds > 0
    assert s.log_level == "INFO"


def test_shipped_config_file_loads(tmp_path: Path) -> None:
    shipped = REPO / "config" / "streamer.yaml"
    if not shipped.exists():
        pytest.skip("config/streamer.yaml not present")
    s = load_settings(shipped, environ={})
    assert s.kafka.dlq_topic


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load(tmp_path, MINIMAL)
    with pytest.raises(ValueError):
        s.kafka.group_id = "other"  # type: ignore[misc]


# --- errors name the dotted key ---


@pytest.mark.parametrize("key", ["dlq_topic", "bootstrap_servers"])
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    data = merged()
    del data["kafka"][key]
    message = config_error(tmp_path, data)
    assert message.startswith(f"kafka.{key}:")
    assert "missing" in message


def test_missing_kafka_section(tmp_path: Path) -> None:
    assert config_error(tmp_path, {"moengage": {}}).startswith("kafka:")
    assert config_error(tmp_path, "").startswith("kafka:")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (merged(kafka={"dlq_topik": "x"}), "kafka.dlq_topik"),
        (merged(moengage={"rate_limit": 5}), "moengage.rate_limit"),
        (merged(nonsense={"a": 1}), "nonsense"),
        (merged(events={"uid": "user"}), "events.uid"),
    ],
)
def test_unknown_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    message = config_error(tmp_path, data)
    assert message.startswith(f"{key}:")
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("section", "values", "key"),
    [
        ("kafka", {"consume_batch_size": "many"}, "kafka.consume_batch_size"),
        ("kafka", {"consume_batch_size": 0}, "kafka.consume_batch_size"),
        ("kafka", {"topics": "one-topic"}, "kafka.topics"),
        ("kafka", {"topics": []}, "kafka.topics"),
        ("kafka", {"dlq_topic": ""}, "kafka.dlq_topic"),
        ("kafka", {"dlq_topic": ["a"]}, "kafka.dlq_topic"),
        ("moengage", {"rate_limit_per_minute": -1}, "moengage.rate_limit_per_minute"),
        ("moengage", {"timeout_seconds": "fast"}, "moengage.timeout_seconds"),
        ("moengage", {"data_center": "07"}, "moengage.data_center"),
        ("moengage", {"max_payload_bytes": 100}, "moengage.max_payload_bytes"),
        ("batching", {"linger_ms": -5}, "batching.linger_ms"),
        ("server", {"port": 70000}, "server.port"),
        ("events", {"enter_actions": []}, "events.enter_actions"),
    ],
)
def test_wrong_type_or_value(
    tmp_path: Path, section: str, values: dict[str, Any], key: str
) -> None:
    assert config_error(tmp_path, merged(**{section: values})).startswith(f"{key}")


def test_wrong_log_level(tmp_path: Path) -> None:
    data = merged()
    data["log_level"] = "LOUD"
    assert config_error(tmp_path, data).startswith("log_level:")


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    data = merged()
    data["moengage"] = ["a"]
    assert config_error(tmp_path, data).startswith("moengage")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    assert "--config" in config_error(tmp_path, "- a\n- b\n")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, "kafka:\n  bootstrap_servers: [unclosed\n")
    assert "--config" in message
    assert "line" in message


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.yaml", environ={})
    assert str(info.value).startswith("--config")


# --- environment overrides ---


def test_env_overrides_list_and_scalars(tmp_path: Path) -> None:
    env = {
        "STREAMER__KAFKA__TOPICS": "[a, b]",
        "STREAMER__KAFKA__BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092",
        "STREAMER__MOENGAGE__RATE_LIMIT_PER_MINUTE": "100",
        "STREAMER__MOENGAGE__TIMEOUT_SECONDS": "2.5",
        "STREAMER__BATCHING__LINGER_MS": "0",
        "STREAMER__LOG_LEVEL": "DEBUG",
        "UNRELATED": "ignored",
    }
    s = load(tmp_path, MINIMAL, env)
    assert s.kafka.topics == ["a", "b"]
    assert s.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert s.moengage.rate_limit_per_minute == 100
    assert s.moengage.timeout_seconds == 2.5
    assert s.batching.linger_ms == 0
    assert s.log_level == "DEBUG"


def test_env_override_wins_over_the_file_and_fills_missing_sections(tmp_path: Path) -> None:
    data = merged(moengage={"partner": "from-file"})
    env = {"STREAMER__MOENGAGE__PARTNER": "from-env", "STREAMER__SERVER__PORT": "9999"}
    s = load(tmp_path, data, env)
    assert s.moengage.partner == "from-env"
    assert s.server.port == 9999


def test_env_supplies_a_required_key(tmp_path: Path) -> None:
    s = load(
        tmp_path, {}, {"STREAMER__KAFKA__BOOTSTRAP_SERVERS": "k", "STREAMER__KAFKA__DLQ_TOPIC": "d"}
    )
    assert s.kafka.dlq_topic == "d"


def test_env_override_into_a_consumer_map(tmp_path: Path) -> None:
    env = {"STREAMER__KAFKA__CONSUMER": "{security.protocol: SASL_SSL, fetch.wait.max.ms: 100}"}
    s = load(tmp_path, MINIMAL, env)
    assert s.kafka.consumer == {"security.protocol": "SASL_SSL", "fetch.wait.max.ms": 100}


def test_env_override_unknown_key_and_bad_type(tmp_path: Path) -> None:
    msg = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA__DLQ_TOPIK": "x"})
    assert msg.startswith("kafka.dlq_topik:")
    msg = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA__CONSUME_BATCH_SIZE": "lots"})
    assert msg.startswith("kafka.consume_batch_size:")


def test_env_override_bad_shapes(tmp_path: Path) -> None:
    msg = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA____TOPICS": "x"})
    assert msg.startswith("STREAMER__KAFKA____TOPICS")
    msg = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA__TOPICS": "[unclosed"})
    assert msg.startswith("STREAMER__KAFKA__TOPICS")
    msg = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA__DLQ_TOPIC__X": "y"})
    assert msg.startswith("STREAMER__KAFKA__DLQ_TOPIC__X")


@pytest.mark.parametrize(
    ("text", "dc"), [("02", "02"), ("'02'", "02"), ("101", "101"), ("6", "06")]
)
def test_data_center_from_env_as_yaml_scalar(tmp_path: Path, text: str, dc: str) -> None:
    # YAML reads an unquoted 02 as the integer 2; the operator meant data center "02"
    s = load(tmp_path, MINIMAL, {"STREAMER__MOENGAGE__DATA_CENTER": text})
    assert s.moengage.data_center == dc
    assert s.moengage.url == f"https://api-{dc}.moengage.com/v1/integrations/cohortsync"


# --- cross-field rules ---


@pytest.mark.parametrize("key", sorted(RESERVED_CONSUMER_KEYS))
def test_reserved_consumer_keys_refused(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, merged(kafka={"consumer": {key: "x", "fetch.min.bytes": 1}}))
    assert message.startswith("kafka")
    assert "kafka.consumer" in message
    assert key in message


def test_reserved_keys_are_the_ones_the_streamer_owns() -> None:
    assert {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "group.protocol",
    } == RESERVED_CONSUMER_KEYS


def test_reserved_consumer_key_via_env_refused(tmp_path: Path) -> None:
    env = {"STREAMER__KAFKA__CONSUMER": "{enable.auto.commit: true}"}
    assert "enable.auto.commit" in config_error(tmp_path, MINIMAL, env)


def test_ordinary_consumer_keys_allowed(tmp_path: Path) -> None:
    consumer = {"security.protocol": "SSL", "session.timeout.ms": 45000, "check.crcs": True}
    s = load(tmp_path, merged(kafka={"consumer": consumer}))
    assert s.kafka.consumer == consumer


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"low_water_events": 10, "high_water_events": 10}, "batching.low_water_events"),
        ({"low_water_events": 11, "high_water_events": 10}, "batching.low_water_events"),
        ({"low_water_bytes": 100, "high_water_bytes": 100}, "batching.low_water_bytes"),
        ({"low_water_bytes": 200, "high_water_bytes": 100}, "batching.low_water_bytes"),
    ],
)
def test_low_water_must_be_below_high_water(
    tmp_path: Path, values: dict[str, int], key: str
) -> None:
    message = config_error(tmp_path, merged(batching=values))
    assert message.startswith("batching")
    assert key in message


def test_low_below_high_water_accepted(tmp_path: Path) -> None:
    s = load(tmp_path, merged(batching={"low_water_events": 9, "high_water_events": 10}))
    assert s.batching.low_water_events == 9


def test_base_url_and_data_center_both_set_refused(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, merged(moengage={"base_url": "http://localhost:8080", "data_center": "02"})
    )
    assert message.startswith("moengage")
    assert "base_url" in message
    assert "data_center" in message


def test_event_aliases_must_be_disjoint(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, merged(events={"enter_actions": ["in", "x"], "exit_actions": ["out", "x"]})
    )
    assert message.startswith("events")
    assert "'x'" in message


def test_event_field_names_must_be_distinct(tmp_path: Path) -> None:
    message = config_error(tmp_path, merged(events={"uid_field": "id", "cohort_id_field": "id"}))
    assert message.startswith("events")
    assert "'id'" in message


# --- MoEngage URL ---


@pytest.mark.parametrize("dc", ["01", "02", "03", "04", "05", "06", "101"])
def test_url_for_data_center(dc: str) -> None:
    assert MoEngageConfig(data_center=dc).url == (
        f"https://api-{dc}.moengage.com/v1/integrations/cohortsync"
    )


def test_url_for_data_center_02_from_yaml(tmp_path: Path) -> None:
    s = load(tmp_path, merged(moengage={"data_center": "02"}))
    assert s.moengage.url == "https://api-02.moengage.com/v1/integrations/cohortsync"
    s = load(tmp_path, "kafka: {bootstrap_servers: k, dlq_topic: d}\nmoengage: {data_center: 02}\n")
    assert s.moengage.url == "https://api-02.moengage.com/v1/integrations/cohortsync"


def test_url_for_base_url_strips_the_trailing_slash() -> None:
    cfg = MoEngageConfig(base_url="http://127.0.0.1:8080/")
    assert cfg.url == "http://127.0.0.1:8080/v1/integrations/cohortsync"


def test_url_default_is_data_center_01() -> None:
    assert MoEngageConfig().url == "https://api-01.moengage.com/v1/integrations/cohortsync"


# --- credentials ---


def test_credentials_from_env() -> None:
    creds = load_credentials({"MOENGAGE_WORKSPACE_ID": "WS1", "MOENGAGE_API_KEY": f" {API_KEY}\n"})
    assert creds.workspace_id == "WS1"
    assert creds.api_key.get_secret_value() == API_KEY


def test_credentials_file_wins_and_is_reread(tmp_path: Path) -> None:
    key_file = tmp_path / "api_key"
    ws_file = tmp_path / "workspace"
    key_file.write_text(f"{API_KEY}\n", encoding="utf-8")
    ws_file.write_text("WS-FILE\n", encoding="utf-8")
    env = {
        "MOENGAGE_WORKSPACE_ID": "WS-ENV",
        "MOENGAGE_WORKSPACE_ID_FILE": str(ws_file),
        "MOENGAGE_API_KEY": "env-key",
        "MOENGAGE_API_KEY_FILE": str(key_file),
    }
    creds = load_credentials(env)
    assert creds.workspace_id == "WS-FILE"
    assert creds.api_key.get_secret_value() == API_KEY
    # a rotated Secret: the mounted file changes, the next read sees the new value
    key_file.write_text("rotated-key", encoding="utf-8")
    assert load_credentials(env).api_key.get_secret_value() == "rotated-key"


def test_credentials_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOENGAGE_WORKSPACE_ID", "WS-OS")
    monkeypatch.setenv("MOENGAGE_API_KEY", API_KEY)
    monkeypatch.delenv("MOENGAGE_WORKSPACE_ID_FILE", raising=False)
    monkeypatch.delenv("MOENGAGE_API_KEY_FILE", raising=False)
    assert load_credentials().workspace_id == "WS-OS"
    assert os.environ["MOENGAGE_API_KEY"] == API_KEY


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MOENGAGE_API_KEY": API_KEY}, "MOENGAGE_WORKSPACE_ID"),
        ({"MOENGAGE_WORKSPACE_ID": "WS"}, "MOENGAGE_API_KEY"),
        ({"MOENGAGE_WORKSPACE_ID": "WS", "MOENGAGE_API_KEY": "   "}, "MOENGAGE_API_KEY"),
        ({}, "MOENGAGE_WORKSPACE_ID"),
    ],
)
def test_missing_credential_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_credentials(env)
    message = str(info.value)
    assert message.startswith(variable)
    assert f"{variable}_FILE" in message
    assert API_KEY not in message


def test_unreadable_or_empty_credential_file(tmp_path: Path) -> None:
    env = {
        "MOENGAGE_WORKSPACE_ID": "WS",
        "MOENGAGE_API_KEY": API_KEY,
        "MOENGAGE_API_KEY_FILE": str(tmp_path / "missing"),
    }
    with pytest.raises(ConfigError) as info:
        load_credentials(env)
    assert str(info.value).startswith("MOENGAGE_API_KEY_FILE")
    assert API_KEY not in str(info.value)
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_credentials({**env, "MOENGAGE_API_KEY_FILE": str(empty)})
    assert str(info.value).startswith("MOENGAGE_API_KEY_FILE")
    assert API_KEY not in str(info.value)


def test_api_key_never_in_repr_or_str(tmp_path: Path) -> None:
    key_file = tmp_path / "api_key"
    key_file.write_text(API_KEY, encoding="utf-8")
    for env in (
        {"MOENGAGE_WORKSPACE_ID": "WS", "MOENGAGE_API_KEY": API_KEY},
        {"MOENGAGE_WORKSPACE_ID": "WS", "MOENGAGE_API_KEY_FILE": str(key_file)},
    ):
        creds = load_credentials(env)
        assert isinstance(creds, Credentials)
        for text in (repr(creds), str(creds), f"{creds}", repr(creds.api_key), str(creds.api_key)):
            assert API_KEY not in text
        assert API_KEY not in str(creds.model_dump())


def test_api_key_in_config_env_is_refused_without_echoing_it(tmp_path: Path) -> None:
    env = {"STREAMER__MOENGAGE__API_KEY": API_KEY}
    message = config_error(tmp_path, MINIMAL, env)
    assert message.startswith("moengage.api_key:")
    assert API_KEY not in message


def test_no_config_error_echoes_a_value(tmp_path: Path) -> None:
    # a secret pasted into the wrong key is not repeated back into the logs
    for section, key in [("kafka", "consume_batch_size"), ("moengage", "data_center")]:
        message = config_error(tmp_path, merged(**{section: {key: API_KEY}}))
        assert API_KEY not in message


def test_a_section_with_every_key_commented_out_means_defaults(tmp_path: Path) -> None:
    text = (
        "kafka:\n  bootstrap_servers: k\n  dlq_topic: d\n"
        "moengage:\n  # base_url: http://x\n"
        "events:\n"
        "log_level:\n"
    )
    s = load(tmp_path, text)
    assert s.moengage == MoEngageConfig()
    assert s.log_level == "INFO"
    s = load(tmp_path, text, {"STREAMER__MOENGAGE__PARTNER": "p"})
    assert s.moengage.partner == "p"
    assert config_error(tmp_path, "kafka:\n").startswith("kafka:")


# --- issue 13, item 6: any value of any key is refused naming the key, or works ---


def _keys(numeric: bool) -> list[str]:
    """Every key of every section, read from the model: a key added later is covered too."""
    keys = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if not numeric or model in (int, float):
                keys.append(section)
            continue
        for name, sub in model.model_fields.items():
            if not numeric or sub.annotation in (int, float):
                keys.append(f"{section}.{name}")
    return keys


NUMERIC_KEYS = _keys(numeric=True)
ALL_KEYS = _keys(numeric=False)
ABSURD_NUMBERS: list[Any] = [
    -1,
    10**18,
    10**30,
    1e308,
    -1e308,
    float("inf"),
    float("nan"),
    "abc",
    "",
    True,
    False,
    None,
    [1],
    {"a": 1},
]


def with_key(key: str, value: Any) -> dict[str, Any]:
    data = merged()
    *sections, name = key.split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
    node[name] = value
    return data


def env_for(key: str, value: Any) -> dict[str, str]:
    """The same value as STREAMER__SECTION__KEY (YAML text, as an operator would export it)."""
    text = yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()
    return {"STREAMER__" + key.replace(".", "__").upper(): text}


def validate(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> Settings:
    """What `cohort-streamer run` checks before it connects anywhere (bar the port)."""
    loaded = load(tmp_path, data, env)
    check_kafka_clients(loaded.kafka)
    return loaded


def test_every_section_has_numeric_keys_to_check() -> None:
    assert {key.split(".")[0] for key in NUMERIC_KEYS} >= {
        "kafka",
        "moengage",
        "batching",
        "server",
        "deadlines",
    }


@pytest.mark.parametrize("value", ABSURD_NUMBERS, ids=repr)
@pytest.mark.parametrize("key", NUMERIC_KEYS)
@pytest.mark.parametrize("source", ["file", "env"])
def test_absurd_number_is_refused_naming_the_key(
    tmp_path: Path, key: str, value: Any, source: str
) -> None:
    if source == "env":
        message = config_error(tmp_path, merged(), env_for(key, value))
    else:
        message = config_error(tmp_path, with_key(key, value))
    assert message.startswith(f"{key}:"), message


ZERO_MEANS_SOMETHING = {"batching.linger_ms", "server.port"}  # send at once; any free port


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_zero_is_refused_unless_it_means_something(tmp_path: Path, key: str) -> None:
    if key in ZERO_MEANS_SOMETHING:
        validate(tmp_path, with_key(key, 0))
    else:
        assert config_error(tmp_path, with_key(key, 0)).startswith(f"{key}:")


def test_yaml_booleans_are_not_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads `linger_ms: off` as false, which would otherwise be 0: send at once
    message = config_error(
        tmp_path, "kafka: {bootstrap_servers: k, dlq_topic: d}\nbatching: {linger_ms: off}\n"
    )
    assert message.startswith("batching.linger_ms:")
    assert "true/false" in message


def test_consume_batch_size_bound_is_confluent_kafkas(tmp_path: Path) -> None:
    """The largest accepted value is one the real consume() takes; one more it would refuse."""
    assert validate(tmp_path, with_key("kafka.consume_batch_size", MAX_CONSUME_BATCH))
    message = config_error(tmp_path, with_key("kafka.consume_batch_size", MAX_CONSUME_BATCH + 1))
    assert message.startswith("kafka.consume_batch_size:")
    assert str(MAX_CONSUME_BATCH) in message
    consumer = Consumer({"group.id": "bounds", "logger": QUIET})  # no brokers: connects nowhere
    try:
        assert consumer.consume(MAX_CONSUME_BATCH, 0) == []
        with pytest.raises(ValueError):
            consumer.consume(MAX_CONSUME_BATCH + 1, 0)
    finally:
        consumer.close()


def test_queued_kbytes_bound_is_librdkafkas(tmp_path: Path) -> None:
    assert validate(tmp_path, with_key("kafka.queued_max_messages_kbytes", MAX_QUEUED_KBYTES))
    message = config_error(
        tmp_path, with_key("kafka.queued_max_messages_kbytes", MAX_QUEUED_KBYTES + 1)
    )
    assert message.startswith("kafka.queued_max_messages_kbytes:")
    assert str(MAX_QUEUED_KBYTES) in message
    with pytest.raises(KafkaException):
        Consumer(
            {"group.id": "b", "logger": QUIET, "queued.max.messages.kbytes": MAX_QUEUED_KBYTES + 1}
        )


QUIET = logging.getLogger("tests.quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["0", "-1", "1e308", ".inf", "1000000", "http://x", "localhost"])
)
VALUES = (
    SCALARS
    | st.lists(SCALARS, max_size=2)
    | st.dictionaries(st.text(max_size=4), SCALARS, max_size=2)
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(ALL_KEYS), value=VALUES, from_env=st.booleans())
def test_any_value_of_any_key_loads_or_names_the_key(key: str, value: Any, from_env: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if from_env:
                validate(Path(tmp), merged(), env_for(key, value))
            else:
                validate(Path(tmp), with_key(key, value))
        except ConfigError as exc:
            assert key in str(exc), str(exc)
            assert "\n" not in str(exc)


# --- the librdkafka maps: librdkafka itself judges them, before anything connects ---


@pytest.mark.parametrize("section", ["consumer", "producer"])
@pytest.mark.parametrize(
    ("values", "key", "words"),
    [
        ({"no.such.property": 1}, "no.such.property", ("No such configuration property",)),
        ({"linger.ms": 5, "no.such.property": "x"}, "no.such.property", ()),
        ({"socket.timeout.ms": "abc"}, "socket.timeout.ms", ("Invalid value",)),
        ({"socket.timeout.ms": -5}, "socket.timeout.ms", ("allowed range",)),
        ({"socket.timeout.ms": 10**30}, "socket.timeout.ms", ("allowed range",)),
        ({"socket.timeout.ms": 1e308}, "socket.timeout.ms", ("allowed range",)),
        ({"check.crcs": "maybe"}, "check.crcs", ("bool",)),
        ({"security.protocol": "bogus"}, "security.protocol", ()),
        ({"compression.type": "zip"}, "compression.type", ()),
        ({"message.max.bytes": 10**12}, "message.max.bytes", ("allowed range",)),
        ({"error_cb": "not a function"}, "error_cb", ()),
        ({"stats_cb": "not a function"}, "stats_cb", ()),
        ({"client.id": "ok", "a\u0000b": 1}, "a b", ()),
    ],
)
def test_client_map_refused_by_librdkafka_names_the_key(
    tmp_path: Path, section: str, values: dict[str, Any], key: str, words: tuple[str, ...]
) -> None:
    for env in (None, {f"STREAMER__KAFKA__{section.upper()}": yaml.safe_dump(values)}):
        data = merged(kafka={section: values}) if env is None else merged()
        message = validation_error(tmp_path, data, env)
        assert message.startswith(f"kafka.{section}.{key}: librdkafka refuses it"), message
        for word in words:
            assert word in message


def test_session_timeout_abc_and_acks_refused(tmp_path: Path) -> None:
    message = validation_error(tmp_path, merged(kafka={"consumer": {"session.timeout.ms": "abc"}}))
    assert message.startswith("kafka.consumer.session.timeout.ms:")
    for acks in (7, 1, 0, "all"):
        message = validation_error(tmp_path, merged(kafka={"producer": {"acks": acks}}))
        assert message.startswith("kafka.producer:") and "acks" in message


@pytest.mark.parametrize("key", sorted(RESERVED_PRODUCER_KEYS))
def test_reserved_producer_keys_refused(tmp_path: Path, key: str) -> None:
    message = config_error(tmp_path, merged(kafka={"producer": {key: "x", "linger.ms": 5}}))
    assert message.startswith("kafka.producer:")
    assert key in message


@pytest.mark.parametrize("client", ["consumer", "producer"])
@pytest.mark.parametrize("key", ["bootstrap.servers", "metadata.broker.list"])
def test_a_broker_list_in_a_client_map_is_refused(tmp_path: Path, client: str, key: str) -> None:
    """It would silently win over kafka.bootstrap_servers for that one client."""
    message = config_error(tmp_path, merged(kafka={client: {key: "elsewhere:9092"}}))
    assert message == f"kafka.{client}: may not set {key}: use kafka.bootstrap_servers"


def test_settings_that_conflict_only_together_name_the_map(tmp_path: Path) -> None:
    consumer = {"fetch.max.bytes": 2_000_000, "message.max.bytes": 3_000_000}
    message = validation_error(tmp_path, merged(kafka={"consumer": consumer}))
    assert message.startswith("kafka.consumer: librdkafka refuses these settings together")
    assert "fetch.max.bytes" in message


def test_a_refused_string_value_is_not_echoed(tmp_path: Path) -> None:
    # a secret pasted into the wrong key stays out of the logs, even when librdkafka quotes it
    for section in ("consumer", "producer"):
        message = validation_error(
            tmp_path, merged(kafka={section: {"security.protocol": API_KEY}})
        )
        assert message.startswith(f"kafka.{section}.security.protocol:")
        assert API_KEY not in message


def test_ordinary_client_settings_pass_librdkafka(tmp_path: Path) -> None:
    consumer = {"security.protocol": "SSL", "session.timeout.ms": 45000, "check.crcs": True}
    producer = {"linger.ms": 5, "compression.type": "zstd", "message.max.bytes": 2_000_000}
    s = validate(tmp_path, merged(kafka={"consumer": consumer, "producer": producer}))
    assert s.kafka.producer == producer


def test_a_nested_or_null_client_value_names_the_map(tmp_path: Path) -> None:
    for value in ({"b": 1}, None, [1]):
        message = config_error(tmp_path, merged(kafka={"consumer": {"a": value}}))
        assert message.startswith("kafka.consumer:")
        assert "a:" in message


LIBRDKAFKA_PROPERTIES = [
    "session.timeout.ms",
    "fetch.wait.max.ms",
    "socket.timeout.ms",
    "compression.type",
    "check.crcs",
    "security.protocol",
    "message.max.bytes",
    "fetch.max.bytes",
    "linger.ms",
    "batch.size",
    "client.id",
    "debug",
    "sasl.mechanism",
    "statistics.interval.ms",
    "no.such.property",
]


@settings(max_examples=300, deadline=None)
@given(
    section=st.sampled_from(["consumer", "producer"]),
    values=st.dictionaries(
        st.sampled_from(LIBRDKAFKA_PROPERTIES) | st.text(min_size=1, max_size=8),
        SCALARS.filter(lambda v: v is not None),
        max_size=3,
    ),
)
def test_any_client_map_passes_librdkafka_or_names_a_key(
    section: str, values: dict[str, Any]
) -> None:
    assume(not (set(values) & (RESERVED_CONSUMER_KEYS | RESERVED_PRODUCER_KEYS)))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            validate(Path(tmp), merged(kafka={section: values}))
        except ConfigError as exc:
            # the map as a whole, or one of its keys (as a ConfigError prints it: on one line)
            culprits = [f"kafka.{section}"] + [
                str(ConfigError(f"kafka.{section}.{k}")) for k in values
            ]
            assert any(str(exc).startswith(f"{name}: ") for name in culprits), str(exc)


# --- moengage.base_url: http(s) with a host, nothing else ---


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://api-01.moengage.com",
        "file:///etc/passwd",
        "api-01.moengage.com",
        "//api-01.moengage.com",
        "http://",
        "https://",
        "https:///path",
        "https://user:pass@api-01.moengage.com",
        "https://user@api-01.moengage.com",
        "https://api-01.moengage.com?x=1",
        "https://api-01.moengage.com/#top",
        "https://api-01.moengage.com:99999",
        "https://api-01.moengage.com:0",
        "https://api-01.moengage.com:http",
        "https://999.1.1.1",
        "https://exa mple.com",
        "https://api-01.moengage.com/a b",
        "http://[::1",
        "javascript:alert(1)",
    ],
)
def test_base_url_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    for env in (None, {"STREAMER__MOENGAGE__BASE_URL": f"'{url}'"}):
        data = merged(moengage={"base_url": url}) if env is None else merged()
        message = config_error(tmp_path, data, env)
        assert message.startswith("moengage.base_url:"), message
        assert "pass@" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://api-01.moengage.com",
        "https://api-01.moengage.com/",
        "http://127.0.0.1:8080",
        "http://localhost:8080/proxy/prefix",
        "http://[::1]:8080",
        "HTTPS://API-02.MOENGAGE.COM",
        "http://emulator_1:8080",
    ],
)
def test_base_url_accepted(tmp_path: Path, url: str) -> None:
    s = load(tmp_path, merged(moengage={"base_url": url}))
    assert s.moengage.url.endswith("/v1/integrations/cohortsync")
    assert "//v1" not in s.moengage.url


def test_empty_base_url_means_the_data_center(tmp_path: Path) -> None:
    s = load(tmp_path, merged(moengage={"base_url": "", "data_center": "03"}))
    assert s.moengage.url == "https://api-03.moengage.com/v1/integrations/cohortsync"


# --- kafka names and addresses ---


@pytest.mark.parametrize(
    "servers",
    ["", "not a url", "k:0", "k:70000", "k:port", "a:1,,b:2", "::1:9092", "k:9092/", "[zz]:1"],
)
def test_bootstrap_servers_must_be_host_port_list(tmp_path: Path, servers: str) -> None:
    message = config_error(tmp_path, merged(kafka={"bootstrap_servers": servers}))
    assert message.startswith("kafka.bootstrap_servers:")


@pytest.mark.parametrize(
    "servers",
    [
        "k",
        "k:9092",
        "b-1.kafka:9092, b-2.kafka:9092",
        "[::1]:9092",
        "SSL://k:9093",
        "kafka_1:29092",
    ],
)
def test_bootstrap_servers_accepted(tmp_path: Path, servers: str) -> None:
    assert load(tmp_path, merged(kafka={"bootstrap_servers": servers})).kafka.bootstrap_servers


@pytest.mark.parametrize("topic", ["^regex.*", "a topic", ".", "..", "x" * 250, "t/1", "ü"])
@pytest.mark.parametrize("key", ["topics", "dlq_topic"])
def test_topic_names_are_kafkas(tmp_path: Path, key: str, topic: str) -> None:
    value: Any = [topic] if key == "topics" else topic
    assert config_error(tmp_path, merged(kafka={key: value})).startswith(f"kafka.{key}")


# --- server.host and server.port: checked when bound, before anything connects ---


@pytest.mark.parametrize("host", ["999.1.1.1", "256.0.0.1", "", "a..b", "-x", "exa mple", "[::1]"])
def test_server_host_must_be_an_address_or_name(tmp_path: Path, host: str) -> None:
    assert config_error(tmp_path, merged(server={"host": host})).startswith("server.host:")


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_listen_on_a_port_in_use_names_server_port(host: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            listen(host, port)
        assert str(info.value).startswith("server.port:")
        assert str(port) in str(info.value)


@pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
def test_listen_on_a_host_not_of_this_machine_names_server_host(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        listen(host, 0)
    assert str(info.value).startswith("server.host:")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0"])
def test_listen_binds_every_address_and_reports_the_port(host: str) -> None:
    sockets = listen(host, 0)
    try:
        assert sockets
        for sock in sockets:
            port = sock.getsockname()[1]
            assert port > 0
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
            break
    finally:
        for sock in sockets:
            sock.close()


# --- the config file itself ---


@pytest.mark.parametrize(
    "text",
    [
        b"kafka: \xff\xfe\n",
        b"kafka: {bootstrap_servers: k, dlq_topic: d}\nx: " + b"9" * 5000 + b"\n",
        b"x: " + b"[" * 5000 + b"\n",
    ],
    ids=["not-utf8", "5000-digit-number", "nested-too-deep"],
)
def test_unreadable_yaml_is_one_line(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "streamer.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(info.value).startswith("--config")


def test_env_value_too_long_to_read_names_the_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL, {"STREAMER__KAFKA__LINGER": "9" * 5000})
    assert message.startswith("STREAMER__KAFKA__LINGER:")


def test_a_config_error_is_always_one_line() -> None:
    assert str(ConfigError("a\nb\r\nc\x00d")) == "a b c d"


def _largest_accepted(base_url: str) -> dict[str, Any]:
    """Every numeric key at the largest value the model accepts (each low mark just below)."""
    data = merged(moengage={"base_url": base_url}, server={"port": 0})
    for key in NUMERIC_KEYS:
        section, name = key.split(".")
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        bounds = [m.le for m in model.model_fields[name].metadata if isinstance(m, Le)]
        if key != "server.port":
            data.setdefault(section, {})[name] = bounds[0]
    data["batching"]["low_water_events"] = data["batching"]["high_water_events"] - 1
    data["batching"]["low_water_bytes"] = data["batching"]["high_water_bytes"] - 1
    return data


async def test_the_largest_accepted_values_build_a_working_streamer(tmp_path: Path) -> None:
    """Accepted means it works: the runtime objects take the extremes without overflowing."""
    listeners = listen("127.0.0.1", 0)
    port = listeners[0].getsockname()[1]
    s = validate(tmp_path, _largest_accepted(f"http://127.0.0.1:{port}"))
    assert s.moengage.timeout_seconds == s.deadlines.shutdown_flush_seconds == 86_400
    streamer = Streamer(s, listeners, lambda: Credentials(workspace_id="w", api_key=API_KEY))
    try:
        await streamer.health.start()
        await streamer.client.start()
        # a request with a day's timeout gets its answer: the health port has no such path
        assert (await streamer.client.post(b"{}")).status == 404
        await streamer.limiter.acquire()
        streamer.limiter.release()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(s.moengage.auth_retry_seconds), 0.01)
    finally:
        await streamer.client.stop()
        await streamer.health.stop()


@pytest.mark.parametrize("partner", ["", "p" * 101, "a\nb", "tab\there"])
def test_partner_is_short_printable_text(tmp_path: Path, partner: str) -> None:
    # it is in every body: a long one would leave no room for members, and every member would
    # be dead-lettered as too large
    assert config_error(tmp_path, merged(moengage={"partner": partner})).startswith(
        "moengage.partner:"
    )
