"""Credential checks for the three API families (moengage-api.md §1.2).

Each check is a pure function of the request headers and the expected identity, returning an
error value (or None). The families answer differently for the same mistake, as documented:

- Cohort Sync: no/unreadable Basic header -> 401 "Authentication Header Required";
  `MOE-APPKEY` differing from the Basic username -> 401 "Authentication Mismatch";
  otherwise a wrong workspace/key pair -> 401 "App Secret key mismatch".
- v3: no Basic header -> 401; `MOE-APPKEY` not this workspace -> 400 "MoEngage Client not found";
  wrong username -> 401 "Invalid APP_KEY"; wrong key -> 401 "APP_SECRET key mismatch".
- v2: Basic only (no `MOE-APPKEY`); any failure -> 401 `{"title":"Authentication required"}`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from . import errors
from .errors import ApiError

APPKEY_HEADER = "MOE-APPKEY"


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """`Basic base64(user:secret)` -> (user, secret); None when absent or unreadable."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return user, secret


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def check_cohort_sync(
    headers: Mapping[str, str], workspace_id: str, api_key: str
) -> ApiError | None:
    credentials = parse_basic(headers.get("Authorization"))
    if credentials is None:
        return errors.AUTH_HEADER_REQUIRED
    user, secret = credentials
    if headers.get(APPKEY_HEADER) != user:
        return errors.APP_KEY_MISMATCH
    if not (_same(user, workspace_id) and _same(secret, api_key)):
        return errors.SECRET_MISMATCH
    return None


def check_v3(headers: Mapping[str, str], workspace_id: str, api_key: str) -> ApiError | None:
    credentials = parse_basic(headers.get("Authorization"))
    if credentials is None:
        return ApiError(401, "Authentication required", "Authentication Header Required")
    if headers.get(APPKEY_HEADER) != workspace_id:
        return ApiError(
            400,
            "Request Error",
            "MoEngage Client not found. Please check values for headers - MOE-APPKEY or MOE-DBNAME",
        )
    user, secret = credentials
    if not _same(user, workspace_id):
        return ApiError(
            401, "Authentication required", "Invalid APP_KEY used in Authentication Header"
        )
    if not _same(secret, api_key):
        return ApiError(
            401,
            "Authentication required",
            "APP_SECRET key mismatch. Please login to the dashboard to verify key",
        )
    return None


def check_v2(headers: Mapping[str, str], workspace_id: str, api_key: str) -> ApiError | None:
    credentials = parse_basic(headers.get("Authorization"))
    if credentials is None:
        return ApiError(401, "Authentication required", "Authentication Header Required")
    user, secret = credentials
    if not (_same(user, workspace_id) and _same(secret, api_key)):
        return ApiError(401, "Authentication required", "Invalid workspace id or API key")
    return None


def forced_failure(status: int | None) -> ApiError | None:
    """The `fail_auth` knob: simulate a revoked key (401) or a suspended account (403)."""
    if status == 401:
        return errors.SECRET_MISMATCH
    if status == 403:
        return errors.ACCOUNT_SUSPENDED
    return None
