"""Configuration: a YAML file, overridden by STREAMER__SECTION__KEY variables, validated up front.

Credentials never live in the file: they come from MOENGAGE_WORKSPACE_ID / MOENGAGE_API_KEY or the
*_FILE variants (a mounted Secret), and are re-read on every auth retry so a rotated secret heals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "STREAMER__"
DATA_CENTERS = ("01", "02", "03", "04", "05", "06", "101")
# librdkafka settings the streamer owns: changing them would break commit-after-success.
RESERVED_CONSUMER_KEYS = frozenset(
    {"group.id", "enable.auto.commit", "enable.auto.offset.store", "group.protocol"}
)


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class KafkaConfig(_Section):
    bootstrap_servers: str = Field(min_length=1)
    group_id: str = Field(default="cohort-streamer", min_length=1)
    topics: list[Annotated[str, Field(min_length=1)]] = Field(
        default=["cohort-membership"], min_length=1
    )
    dlq_topic: str = Field(min_length=1)
    consumer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    consume_batch_size: PositiveInt = 5000
    commit_interval_ms: PositiveInt = 1000
    startup_timeout_seconds: PositiveFloat = 30.0
    # librdkafka's prefetch queue counts toward RSS; keep it small, Kafka is the buffer.
    queued_max_messages_kbytes: PositiveInt = 16384

    @model_validator(mode="after")
    def _no_reserved_keys(self) -> KafkaConfig:
        reserved = sorted(RESERVED_CONSUMER_KEYS & self.consumer.keys())
        if reserved:
            raise ValueError(
                f"kafka.consumer may not set {', '.join(reserved)}: the streamer owns them "
                "(use kafka.group_id for the group)"
            )
        return self


class MoEngageConfig(_Section):
    base_url: str | None = None
    data_center: Literal["01", "02", "03", "04", "05", "06", "101"] | None = None
    partner: str = Field(default="cohort-streamer", min_length=1)
    rate_limit_per_minute: PositiveInt = 300
    rate_window_seconds: PositiveFloat = 60.0
    max_payload_bytes: Annotated[int, Field(ge=1024)] = 128000
    timeout_seconds: PositiveFloat = 30.0
    max_in_flight: PositiveInt = 8
    retry_initial_seconds: PositiveFloat = 0.5
    retry_max_seconds: PositiveFloat = 30.0
    retry_after_cap_seconds: PositiveFloat = 60.0
    auth_retry_seconds: PositiveFloat = 30.0

    @field_validator("data_center", mode="before")
    @classmethod
    def _data_center_from_yaml_int(cls, value: Any) -> Any:
        # YAML (the file, and STREAMER__MOENGAGE__DATA_CENTER=02) reads 02 as the integer 2
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:02d}"
        return value

    @model_validator(mode="after")
    def _one_host(self) -> MoEngageConfig:
        if self.base_url and self.data_center:
            raise ValueError("set moengage.base_url or moengage.data_center, not both")
        return self

    @property
    def url(self) -> str:
        """The Cohort Sync endpoint for this workspace's data center."""
        return f"{self.host}/v1/integrations/cohortsync"

    @property
    def host(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        return f"https://api-{self.data_center or '01'}.moengage.com"


class BatchingConfig(_Section):
    linger_ms: Annotated[int, Field(ge=0)] = 1000
    # while catching up, a remainder older than this is sent anyway: commits advance and a
    # crash replays at most about this much of the backlog
    max_hold_ms: PositiveInt = 300_000
    high_water_events: PositiveInt = 200_000
    low_water_events: PositiveInt = 100_000
    high_water_bytes: PositiveInt = 64 * 1024 * 1024
    low_water_bytes: PositiveInt = 32 * 1024 * 1024
    max_event_bytes: PositiveInt = 65536

    @model_validator(mode="after")
    def _marks_ordered(self) -> BatchingConfig:
        if self.low_water_events >= self.high_water_events:
            raise ValueError("batching.low_water_events must be below batching.high_water_events")
        if self.low_water_bytes >= self.high_water_bytes:
            raise ValueError("batching.low_water_bytes must be below batching.high_water_bytes")
        return self


class EventsConfig(_Section):
    """Field names and action aliases, so an existing producer's schema maps without code."""

    action_field: str = "action"
    cohort_id_field: str = "cohort_id"
    cohort_name_field: str = "cohort_name"
    cohort_description_field: str = "cohort_description"
    uid_field: str = "uid"
    ts_field: str = "ts"
    enter_actions: list[str] = Field(default=["enter"], min_length=1)
    exit_actions: list[str] = Field(default=["exit"], min_length=1)

    @model_validator(mode="after")
    def _aliases_disjoint(self) -> EventsConfig:
        both = set(self.enter_actions) & set(self.exit_actions)
        if both:
            raise ValueError(f"events: {sorted(both)} is both an enter and an exit action")
        return self

    @model_validator(mode="after")
    def _fields_distinct(self) -> EventsConfig:
        names = [v for k, v in self.model_dump().items() if k.endswith("_field")]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"events: field name(s) {repeated} used for more than one *_field")
        return self


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464


class DeadlinesConfig(_Section):
    shutdown_flush_seconds: PositiveFloat = 20.0
    revoke_flush_seconds: PositiveFloat = 15.0


class Settings(_Section):
    kafka: KafkaConfig
    moengage: MoEngageConfig = MoEngageConfig()
    batching: BatchingConfig = BatchingConfig()
    events: EventsConfig = EventsConfig()
    server: ServerConfig = ServerConfig()
    deadlines: DeadlinesConfig = DeadlinesConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Credentials(BaseModel):
    model_config = ConfigDict(frozen=True)
    workspace_id: str
    api_key: SecretStr


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override and validate the config; any problem becomes one ConfigError line."""
    env = os.environ if environ is None else environ
    raw = _read_yaml(path)
    _apply_env_overrides(raw, env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """Credentials from the environment; *_FILE variants win so a rotated Secret is picked up."""
    env = os.environ if environ is None else environ
    return Credentials(
        workspace_id=_secret_from_env(env, "MOENGAGE_WORKSPACE_ID"),
        api_key=SecretStr(_secret_from_env(env, "MOENGAGE_API_KEY")),
    )


def _secret_from_env(env: Mapping[str, str], name: str) -> str:
    file_name = env.get(f"{name}_FILE")
    if file_name:
        # the path is not echoed: a secret pasted into the *_FILE variable must not be logged
        try:
            value = Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read that file: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{name}_FILE: the file it names is empty")
        return value
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name}: not set; export {name} or {name}_FILE (a file holding it)")
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path}:{where} is not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the top level must be a mapping of sections")
    # a section whose keys are all commented out reads as null: it means "all defaults"
    return {key: value for key, value in data.items() if value is not None}


def _apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """STREAMER__KAFKA__TOPICS='[a, b]' -> raw['kafka']['topics'] = ['a', 'b'] (YAML scalars)."""
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            raise ConfigError(f"{name}: empty key segment; use STREAMER__SECTION__KEY")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{name}: value is not a valid YAML scalar or list") from None
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {key} is not a section")
            node = child
        node[keys[-1]] = value


def _describe(exc: ValidationError) -> str:
    """The first error as 'section.key: what is wrong' (the model names keys, never values)."""
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "config"
    kind = error["type"]
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check the spelling against config/streamer.yaml)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{key}: {message}"
