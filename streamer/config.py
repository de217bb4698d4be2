"""Configuration: a YAML file, overridden by STREAMER__SECTION__KEY variables, validated up front.

Credentials never live in the file: they come from MOENGAGE_WORKSPACE_ID / MOENGAGE_API_KEY or the
*_FILE variants (a mounted Secret), and are re-read on every auth retry so a rotated secret heals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from streamer.addresses import base_url_problem, is_broker_list, is_host

ENV_PREFIX = "STREAMER__"
# librdkafka settings the streamer owns: changing them would break commit-after-success.
RESERVED_CONSUMER_KEYS = frozenset(
    {"group.id", "enable.auto.commit", "enable.auto.offset.store", "group.protocol"}
)
# ... and of the DLQ producer: a dead letter counts as written only once every replica has it,
# and a transactional producer would refuse every write outside a transaction
RESERVED_PRODUCER_KEYS = frozenset(
    {"acks", "request.required.acks", "enable.idempotence", "transactional.id"}
)
# the brokers are kafka.bootstrap_servers, for the consumer and the DLQ producer alike
BROKER_LIST_KEYS = frozenset({"bootstrap.servers", "metadata.broker.list"})

# per librdkafka map: the keys the streamer owns, and what to do instead
_OWNED_BY_THE_STREAMER = {
    "consumer": (
        RESERVED_CONSUMER_KEYS,
        "the streamer owns them (use kafka.group_id for the group)",
    ),
    "producer": (
        RESERVED_PRODUCER_KEYS,
        "the streamer owns them (the DLQ producer is idempotent with acks=all)",
    ),
}

# Upper bounds: past them a value would crash a library later instead of being refused here.
MAX_CONSUME_BATCH = 1_000_000  # confluent-kafka's Consumer.consume() takes at most this many
MAX_QUEUED_KBYTES = 2_097_151  # librdkafka's range for queued.max.messages.kbytes
MAX_SECONDS = 86_400  # one day: no wait is longer on purpose, and timers stay in range
MAX_MILLISECONDS = MAX_SECONDS * 1000
MAX_COUNT = 2**53  # counts stay exact as floats (the rate limiter and the gauges hold floats)
MAX_PAYLOAD_BYTES = 128_000  # MoEngage refuses larger Cohort Sync bodies (413)
MAX_PARTNER_CHARS = 100  # at most 400 bytes of the smallest body (1,024 bytes)


class ConfigError(Exception):
    """A configuration problem, phrased as one line naming the key and the fix."""

    def __init__(self, message: str) -> None:
        # one line whatever a key or a library message holds
        super().__init__(_CONTROL_CHARACTERS.sub(" ", message))


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_a_bool(value: Any) -> Any:
    # YAML reads yes/no/on/off as booleans, which pydantic would take as 1 and 0
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


NotBool = BeforeValidator(_not_a_bool)
Count = Annotated[int, NotBool, Field(gt=0, le=MAX_COUNT)]
Milliseconds = Annotated[int, NotBool, Field(gt=0, le=MAX_MILLISECONDS)]
Seconds = Annotated[float, NotBool, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _topic_name(name: str) -> str:
    if not _TOPIC.fullmatch(name) or name in (".", ".."):
        raise ValueError("not a Kafka topic name: 1-249 letters, digits, '.', '_' or '-'")
    return name


def _printable(text: str) -> str:
    if _CONTROL_CHARACTERS.search(text):
        raise ValueError("must not contain control characters")
    return text


def _client_map(value: Any) -> Any:
    """librdkafka settings are scalars: a nested map or null is a mistake, named here."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(item, str | int | float | bool):
                raise ValueError(f"{key}: a librdkafka setting is a string, number or boolean")
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]
ActionName = Annotated[str, Field(min_length=1)]
ClientMap = Annotated[dict[str, str | int | float | bool], BeforeValidator(_client_map)]


class KafkaConfig(_Section):
    bootstrap_servers: str = Field(min_length=1)
    group_id: Annotated[str, AfterValidator(_printable)] = Field(
        default="cohort-streamer", min_length=1
    )
    topics: list[TopicName] = Field(default=["cohort-membership"], min_length=1)
    dlq_topic: TopicName
    # checked by librdkafka itself before anything connects (streamer/kafkacheck.py)
    consumer: ClientMap = Field(default_factory=dict)
    producer: ClientMap = Field(default_factory=dict)
    consume_batch_size: Annotated[int, NotBool, Field(gt=0, le=MAX_CONSUME_BATCH)] = 5000
    commit_interval_ms: Milliseconds = 1000
    startup_timeout_seconds: Seconds = 30.0
    # librdkafka's prefetch queue counts toward RSS; keep it small, Kafka is the buffer.
    queued_max_messages_kbytes: Annotated[int, NotBool, Field(gt=0, le=MAX_QUEUED_KBYTES)] = 16384

    @field_validator("bootstrap_servers")
    @classmethod
    def _broker_list(cls, value: str) -> str:
        if not is_broker_list(value):
            raise ValueError(
                "expected host:port[,host:port] (e.g. kafka-0.kafka:9092 or [::1]:9092), "
                "port 1-65535"
            )
        return value

    @field_validator("consumer", "producer")
    @classmethod
    def _no_owned_keys(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # a broker list here would silently win over kafka.bootstrap_servers for one client
        brokers = (BROKER_LIST_KEYS, "use kafka.bootstrap_servers")
        for keys, why in (brokers, _OWNED_BY_THE_STREAMER[info.field_name or ""]):
            named = sorted(keys & value.keys())
            if named:
                raise ValueError(f"may not set {', '.join(named)}: {why}")
        return value


def connection_settings(kafka: KafkaConfig) -> dict[str, str | int | float | bool]:
    """The connection settings of kafka.consumer (TLS, SASL) that every other client of the
    same cluster needs too (admin clients, the replay's reader)."""
    return {k: v for k, v in kafka.consumer.items() if k.startswith(("security.", "sasl.", "ssl."))}


class MoEngageConfig(_Section):
    base_url: str | None = None
    data_center: Literal["01", "02", "03", "04", "05", "06", "101"] | None = None
    # sent in every body: a long one would leave max_payload_bytes no room for members
    partner: Annotated[str, AfterValidator(_printable)] = Field(
        default="cohort-streamer", min_length=1, max_length=MAX_PARTNER_CHARS
    )
    rate_limit_per_minute: Count = 300
    rate_window_seconds: Seconds = 60.0
    max_payload_bytes: Annotated[int, NotBool, Field(ge=1024, le=MAX_PAYLOAD_BYTES)] = 128000
    timeout_seconds: Seconds = 30.0
    max_in_flight: Count = 8
    retry_initial_seconds: Seconds = 0.5
    retry_max_seconds: Seconds = 30.0
    retry_after_cap_seconds: Seconds = 60.0
    auth_retry_seconds: Seconds = 30.0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = base_url_problem(value) if value else None  # empty: data_center decides
        if problem:
            raise ValueError(problem)
        return value

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
    linger_ms: Annotated[int, NotBool, Field(ge=0, le=MAX_MILLISECONDS)] = 1000
    # while catching up, a remainder older than this is sent anyway: commits advance and a
    # crash replays at most about this much of the backlog
    max_hold_ms: Milliseconds = 300_000
    high_water_events: Count = 200_000
    low_water_events: Count = 100_000
    high_water_bytes: Count = 64 * 1024 * 1024
    low_water_bytes: Count = 32 * 1024 * 1024
    max_event_bytes: Count = 65536

    @model_validator(mode="after")
    def _marks_ordered(self) -> BatchingConfig:
        if self.low_water_events >= self.high_water_events:
            raise ValueError("batching.low_water_events must be below batching.high_water_events")
        if self.low_water_bytes >= self.high_water_bytes:
            raise ValueError("batching.low_water_bytes must be below batching.high_water_bytes")
        return self


class EventsConfig(_Section):
    """Field names and action aliases, so an existing producer's schema maps without code."""

    action_field: str = Field(default="action", min_length=1)
    cohort_id_field: str = Field(default="cohort_id", min_length=1)
    cohort_name_field: str = Field(default="cohort_name", min_length=1)
    cohort_description_field: str = Field(default="cohort_description", min_length=1)
    uid_field: str = Field(default="uid", min_length=1)
    ts_field: str = Field(default="ts", min_length=1)
    enter_actions: list[ActionName] = Field(default=["enter"], min_length=1)
    exit_actions: list[ActionName] = Field(default=["exit"], min_length=1)

    @model_validator(mode="after")
    def _aliases_disjoint(self) -> EventsConfig:
        both = set(self.enter_actions) & set(self.exit_actions)
        if both:
            raise ValueError(
                f"events.enter_actions and events.exit_actions both hold {sorted(both)}; "
                "an action is either"
            )
        return self

    @model_validator(mode="after")
    def _fields_distinct(self) -> EventsConfig:
        fields = {k: v for k, v in self.model_dump().items() if k.endswith("_field")}
        names = list(fields.values())
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            keys = ", ".join(f"events.{k}" for k, v in fields.items() if v in repeated)
            raise ValueError(f"{keys} name the same field(s) {repeated}; each needs its own")
        return self


class ServerConfig(_Section):
    # resolved and bound at start, before anything connects (health.listen)
    host: str = "0.0.0.0"
    port: Annotated[int, NotBool, Field(ge=0, le=65535)] = 9464

    @field_validator("host")
    @classmethod
    def _ip_or_name(cls, value: str) -> str:
        if not is_host(value):
            raise ValueError(
                "not an IP address or host name; use 0.0.0.0 (every interface), 127.0.0.1 "
                "or a name of this machine"
            )
        return value


class DeadlinesConfig(_Section):
    shutdown_flush_seconds: Seconds = 20.0
    revoke_flush_seconds: Seconds = 15.0


class Settings(_Section):
    kafka: KafkaConfig
    moengage: MoEngageConfig = MoEngageConfig()
    batching: BatchingConfig = BatchingConfig()
    events: EventsConfig = EventsConfig()
    server: ServerConfig = ServerConfig()
    deadlines: DeadlinesConfig = DeadlinesConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # text for a terminal; json (one object per line) for a log pipeline (the chart's default)
    log_format: Literal["text", "json"] = "text"


class Credentials(BaseModel):
    model_config = ConfigDict(frozen=True)
    workspace_id: str
    api_key: SecretStr


# librdkafka properties whose values are credentials: sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, sasl.jaas.config, ssl.key.pem, ...
_SECRET_PROPERTY = re.compile(r"password|secret|jaas|\.pem$|token")


def kafka_secrets(kafka: KafkaConfig) -> list[str]:
    """The credential values in the consumer and producer maps (never to be logged)."""
    return [
        str(value)
        for client in (kafka.consumer, kafka.producer)
        for key, value in client.items()
        if _SECRET_PROPERTY.search(key) and str(value)
    ]


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
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"--config {path}:{where} is not valid YAML") from None
    except _UNREADABLE_YAML as exc:
        raise ConfigError(f"--config {path}: cannot be read as YAML: {_plainly(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the top level must be a mapping of sections")
    # a section whose keys are all commented out reads as null: it means "all defaults"
    return {key: value for key, value in data.items() if value is not None}


# Valid YAML that Python cannot build: an integer over 4300 digits (ValueError), nesting
# deeper than the interpreter's recursion limit (RecursionError).
_UNREADABLE_YAML = (ValueError, RecursionError)


def _plainly(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return "a number too long to read"


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
        except _UNREADABLE_YAML as exc:
            raise ConfigError(f"{name}: cannot be read as YAML: {_plainly(exc)}") from None
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
