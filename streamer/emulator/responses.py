"""JSON responses rendered with orjson (aiohttp's own json_response uses the stdlib encoder)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from .errors import ApiError, cohort_error_body, v2_error_body, v3_error_body

JSON = "application/json"


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type=JSON, headers=headers
    )


def cohort_error(error: ApiError) -> web.Response:
    return json_response(cohort_error_body(error), error.status, error.headers)


def v3_error(error: ApiError) -> web.Response:
    body = v3_error_body(error.type, error.message, error.extras)
    return json_response(body, error.status, error.headers)


def v2_error(error: ApiError) -> web.Response:
    return json_response(v2_error_body(error.type, error.message), error.status, error.headers)
