"""Error catalogue and the three error envelopes (moengage-api.md §1.4).

An `ApiError` is a plain value: validation and auth functions return one instead of raising,
so they stay pure and the handler decides which envelope family to render it in.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from typing import Any

_REQUEST_ID_ALPHABET = string.ascii_letters + string.digits
# Request ids are cosmetic; they must not draw from the seeded fault RNG, or adding an id
# to a response would shift the fault sequence.
_ids = random.Random()


def new_request_id() -> str:
    """An 8-character id like the documented `"sYsoPuzf"`."""
    return "".join(_ids.choices(_REQUEST_ID_ALPHABET, k=8))


@dataclass(frozen=True, slots=True)
class ApiError:
    status: int
    type: str
    message: str
    attribute: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # v3 only: documented extras inside `error` (existing_cs_name/_id on 409, actual_count/limit)
    extras: dict[str, Any] = field(default_factory=dict)


# --- Cohort Sync catalogue (§2 "Errors") ---------------------------------------------------

AUTH_HEADER_REQUIRED = ApiError(401, "Authentication required", "Authentication Header Required")
SECRET_MISMATCH = ApiError(
    401,
    "Authentication required",
    "App Secret key mismatch. Please login to the dashboard to verify key",
)
APP_KEY_MISMATCH = ApiError(
    401, "Authentication Mismatch", "App key mismatch in params and authentication"
)
ACCOUNT_SUSPENDED = ApiError(
    403, "Account Suspended", "Your account is suspended. Please contact MoEngage team."
)
PAYLOAD_TOO_LARGE = ApiError(413, "Payload too large", "Payload can not exceed 128KB")
UNSUPPORTED_MEDIA_TYPE = ApiError(415, "Unsupported media type", "Content type is not supported")
MALFORMED_JSON = ApiError(
    400,
    "Malformed JSON",
    "Could not decode the request body. The JSON was incorrect or not encoded as UTF-8.",
)
RATE_LIMITED = ApiError(
    429,
    "Rate Limits Exceeded",
    "Rate limits for customers exceeded. Please Try After Some Time",
)
SERVER_ERROR = ApiError(
    500,
    "Server Error",
    "An unexpected error was encountered while processing this request. "
    "Please contact MoEngage Team",
)


def missing_attribute(attribute: str) -> ApiError:
    return ApiError(
        400, "MissingAttributeError", f"{attribute} is not found in the payload", attribute
    )


def invalid_attribute(attribute: str, message: str) -> ApiError:
    # The real type name for a present-but-invalid field is undocumented (§8 item 2);
    # this mirrors the documented MissingAttributeError.
    return ApiError(400, "InvalidAttributeError", message, attribute)


def cohort_error_body(error: ApiError) -> dict[str, Any]:
    """Cohort Sync envelope: `{"status":"fail","error":{attribute?,message,type,request_id}}`."""
    detail: dict[str, Any] = {}
    if error.attribute is not None:
        detail["attribute"] = error.attribute
    detail["message"] = error.message
    detail["type"] = error.type
    detail["request_id"] = new_request_id()
    return {"status": "fail", "error": detail}


# --- v3 Filter Segments (§5.3) ----------------------------------------------------------------


def v3_error_body(code: str, message: str, extras: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "response_id": new_request_id(),
        "type": "custom_segment",
        "error": {"code": code, "message": message, **(extras or {})},
    }


# --- v2 File / Manage Segments (§3.1, §4) -----------------------------------------------------


def v2_error_body(title: str, description: str) -> dict[str, Any]:
    return {"title": title, "description": description}
