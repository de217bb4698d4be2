"""What every v3 call passes before its own logic: credentials, then the operation's quotas.

Auth comes first (an unauthenticated caller learns nothing else); only authenticated calls
use up a quota (§5.3: 429 "API rate limit breached. Current limit: n/m mins").
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from streamer.segment_limits import Quota

from . import auth
from .context import EmulatorContext
from .errors import ApiError
from .quotas import describe


def admit(
    request: web.Request, context: EmulatorContext, operation: str, quotas: Sequence[Quota]
) -> ApiError | None:
    context.stats.segments_api_requests += 1
    knobs = context.knobs
    problem = auth.forced_failure(knobs.fail_auth) or auth.check_v3(
        request.headers, context.workspace_id, knobs.api_key
    )
    if problem is not None or not knobs.segment_quotas:
        return problem
    full = context.quotas.admit(operation, quotas, context.clock())
    if full is None:
        return None
    return ApiError(
        429, "Too Many Requests", f"API rate limit breached. Current limit: {describe(full)}"
    )
