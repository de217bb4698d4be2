"""The asynchronous half of a file operation (§3.3, §6): download, check, apply, call back.

The request was answered already (202 / v1 200) with the segment as it was (empty after a
create). A job then downloads `file_url` (never more than `max_file_bytes` are read; at the
limit or above is "too big", §3.1 says < 150 MB), checks it (csv_rules.py), applies
add/remove/replace to the segment's members and POSTs the result to the callback URL, in the
API family's own shape. A download failure is not retried (the real API retries, §3.3: a test
wants the failure now). The `fail_file_processing` knob makes every job end in status 500.
Jobs run on the emulator's loop; stopping the emulator cancels the unfinished ones.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

from .context import EmulatorContext
from .csv_rules import BadFile, parse_csv
from .state import Segment, now_iso

DOWNLOAD_TIMEOUT_SECONDS = 30
CALLBACK_TIMEOUT_SECONDS = 10
SERVER_FAILURE = "Internal Server Error. Contact MoEngage Team."


@dataclass(frozen=True, slots=True)
class Job:
    segment: Segment
    operation: str  # create | add | remove | replace
    file_url: str
    attribute_type: str
    callback_url: str | None
    family: str  # "v2" or "v1": the callback's shape
    request_id: str
    db_name: str


def new_job_id() -> str:
    """32 hex digits, like the documented `d5a263c4ef1198ae3d8496c0460f570f`."""
    return secrets.token_hex(16)


def start(context: EmulatorContext, job: Job) -> None:
    task = asyncio.get_running_loop().create_task(_run(context, job))
    context.jobs.add(task)
    task.add_done_callback(context.jobs.discard)


async def _run(context: EmulatorContext, job: Job) -> None:
    result = await _process(context, job)
    context.stats.file_results[str(result["status"])] += 1
    if job.callback_url:
        await _call_back(job.callback_url, result)


async def _process(context: EmulatorContext, job: Job) -> dict[str, Any]:
    knobs = context.knobs
    if knobs.fail_file_processing:
        return _failure(job, 500, SERVER_FAILURE)
    try:
        data = await _download(job.file_url, knobs.max_file_bytes)
        values = parse_csv(data, job.attribute_type)
    except BadFile as exc:
        return _failure(job, 400, _with_state(job, str(exc)))
    _apply(job, values)
    found = len(values)
    return _success(job, {"values_found": found, "values_processed": found, "user_count": found})


async def _download(url: str, limit: int) -> bytes:
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url) as resp,
        ):
            if resp.status != 200:
                raise BadFile("File download failed.")
            if resp.content_length is not None and resp.content_length >= limit:
                raise BadFile(_too_big(limit))
            data = bytearray()
            # read(n) returns what has arrived, up to n: loop until the end or the limit
            while chunk := await resp.content.read(limit - len(data)):
                data += chunk
                if len(data) >= limit:
                    raise BadFile(_too_big(limit))
            return bytes(data)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        raise BadFile("File download failed.") from None


def _too_big(limit: int) -> str:
    return f"File size cannot be greater than {limit // (1024 * 1024)}MB."


def _apply(job: Job, values: list[str]) -> None:
    members = job.segment.members
    if job.operation == "remove":
        members.difference_update(values)
    else:
        if job.operation == "replace":
            members.clear()
        members.update(values)
    job.segment.updated_time = now_iso()


def _with_state(job: Job, reason: str) -> str:
    if job.operation != "create":
        return reason
    return f"{reason} Created custom_segment contains {len(job.segment.members)} users."


def _success(job: Job, counts: dict[str, int]) -> dict[str, Any]:
    return {**_envelope(job), **counts, "status": 201}


def _failure(job: Job, status: int, message: str) -> dict[str, Any]:
    return {**_envelope(job), "status": status, "error_message": message}


def _envelope(job: Job) -> dict[str, Any]:
    if job.family == "v1":  # §6: no db_name
        return {"segment_name": job.segment.name, "request_id": job.request_id}
    return {"db_name": job.db_name, "segment_name": job.segment.name, "request_id": job.request_id}


async def _call_back(url: str, result: dict[str, Any]) -> None:
    """One attempt; the receiver's answer is not read beyond its status."""
    timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(url, json=result, allow_redirects=False) as resp,
        ):
            resp.close()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        pass  # the real API documents no retry; the result stays visible in /_emulator/stats
