"""streamer/config.py: settings from YAML + environment, credentials from env or *_FILE."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamer.config import (
    RESERVED_CONSUMER_KEYS,
    ConfigError,
    Credentials,
    MoEngageConfig,
    Settings,
    load_credentials,
    load_settings,
)

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
