"""Emulator configuration: fixed start-up settings plus knobs that change at run time.

`Knobs` is immutable; an update builds a new instance and swaps it in, so a request handler
that read `context.knobs` once sees one consistent set for its whole life.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_PAYLOAD_BYTES = 128_000
DEFAULT_RATE_LIMIT_PER_MINUTE = 300
DEFAULT_RATE_WINDOW_SECONDS = 60.0
FORCED_AUTH_STATUSES = (401, 403)


@dataclass(frozen=True, slots=True)
class Knobs:
    """Everything `POST /_emulator/config` may change while the emulator runs."""

    api_key: str = "emulator-api-key"
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    rate_window_seconds: float = DEFAULT_RATE_WINDOW_SECONDS
    fail_5xx_ratio: float = 0.0
    fail_429_ratio: float = 0.0
    latency_ms: float = 0.0
    seed: int = 0
    refuse_uids: frozenset[str] = frozenset()
    # None: real credential check; 401/403: every API call fails as if the key were revoked.
    fail_auth: int | None = None
    # The real API documents no Retry-After; sending it on rate-limit 429s is an extension
    # that can be switched off to test a client's fallback.
    retry_after: bool = True
    # Segments APIs: the 1,000 active segments cap (§1.3) and whether the per-operation
    # quotas of §3.2/§5 apply (off lets a test create many segments quickly).
    active_segments_limit: int = 1000
    segment_quotas: bool = True
    # File segments (§3): a file at or above this size is refused (§3.1: < 150 MB), and
    # fail_file_processing makes every file job report status 500.
    max_file_bytes: int = 150 * 1024 * 1024
    fail_file_processing: bool = False

    def __post_init__(self) -> None:
        _check_knobs(self)


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Start-up settings: where to listen, whose workspace this is, and the initial knobs."""

    workspace_id: str = "emulator-workspace"
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port; read it back from the handle
    knobs: Knobs = field(default_factory=Knobs)
    # Monotonic seconds; injectable so rate-window tests need no sleeping.
    clock: Callable[[], float] = time.monotonic


def _check_knobs(knobs: Knobs) -> None:
    if not knobs.api_key:
        raise ValueError("api_key must be a non-empty string")
    if knobs.max_payload_bytes < 1:
        raise ValueError("max_payload_bytes must be >= 1")
    if knobs.rate_limit_per_minute < 1:
        raise ValueError("rate_limit_per_minute must be >= 1")
    if knobs.rate_window_seconds <= 0:
        raise ValueError("rate_window_seconds must be > 0")
    for name in ("fail_5xx_ratio", "fail_429_ratio"):
        if not 0.0 <= getattr(knobs, name) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1")
    if knobs.fail_5xx_ratio + knobs.fail_429_ratio > 1.0:
        raise ValueError("fail_5xx_ratio + fail_429_ratio must not exceed 1")
    if knobs.latency_ms < 0:
        raise ValueError("latency_ms must be >= 0")
    if knobs.max_file_bytes < 1:
        raise ValueError("max_file_bytes must be >= 1")
    if knobs.active_segments_limit < 0:
        raise ValueError("active_segments_limit must be >= 0")
    if knobs.fail_auth is not None and knobs.fail_auth not in FORCED_AUTH_STATUSES:
        raise ValueError("fail_auth must be null, 401 or 403")


# JSON type accepted for each knob; bool is excluded from int/float on purpose (True == 1).
_KNOB_TYPES: dict[str, tuple[type, ...]] = {
    "api_key": (str,),
    "max_payload_bytes": (int,),
    "rate_limit_per_minute": (int,),
    "rate_window_seconds": (int, float),
    "fail_5xx_ratio": (int, float),
    "fail_429_ratio": (int, float),
    "latency_ms": (int, float),
    "seed": (int,),
    "refuse_uids": (list,),
    "fail_auth": (int, type(None)),
    "retry_after": (bool,),
    "active_segments_limit": (int,),
    "segment_quotas": (bool,),
    "max_file_bytes": (int,),
    "fail_file_processing": (bool,),
}


def update_knobs(current: Knobs, patch: Mapping[str, Any]) -> Knobs:
    """Return `current` with the JSON `patch` applied; ValueError names the offending key."""
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        expected = _KNOB_TYPES.get(key)
        if expected is None:
            raise ValueError(f"unknown knob: {key}")
        if isinstance(value, bool) and bool not in expected:
            raise ValueError(f"{key}: wrong type")
        if not isinstance(value, expected):
            raise ValueError(f"{key}: wrong type")
        changes[key] = _coerce(key, value)
    return dataclasses.replace(current, **changes)


def _coerce(key: str, value: Any) -> Any:
    if key == "refuse_uids":
        if not all(isinstance(uid, str) for uid in value):
            raise ValueError("refuse_uids: must be a list of strings")
        return frozenset(value)
    if _KNOB_TYPES[key] == (int, float):
        return float(value)
    return value


def knobs_to_json(knobs: Knobs) -> dict[str, Any]:
    """The knobs as `GET /_emulator/config` shows them (refuse_uids sorted for stable output)."""
    out = {f.name: getattr(knobs, f.name) for f in dataclasses.fields(knobs)}
    out["refuse_uids"] = sorted(knobs.refuse_uids)
    return out
