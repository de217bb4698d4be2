"""Pure validation of a Cohort Sync request (moengage-api.md §2 "Body").

`parse_cohort_request(body)` returns either a `CohortRequest` or the `ApiError` the API would
answer with. Fields are checked in document order (action, partner, parameters, cohort_name,
cohort_id, cohort_description, members) and the first problem wins:

- body not UTF-8 JSON, or not a JSON object      -> 400 "Malformed JSON"
- a required key absent                          -> 400 MissingAttributeError, attribute = key
- a key present with a wrong type/value          -> 400 InvalidAttributeError, attribute = key
  (`action` not add_members|remove_members; empty strings; `cohort_name` starting with "." or
  holding one of | * ? \\ : < > = $ "; `cohort_description` present but not a string (null is
  refused too); `members` empty, or an element that is not an object with a non-empty string
  `uid` -> attribute "members", message naming the index).

Unknown extra keys are ignored, as the documented schema does not forbid them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson

from . import errors
from .errors import ApiError

ACTIONS = frozenset({"add_members", "remove_members"})
FORBIDDEN_NAME_CHARS = frozenset('|*?\\:<>=$"')


@dataclass(frozen=True, slots=True)
class CohortRequest:
    action: str
    partner: str
    cohort_id: str
    cohort_name: str
    cohort_description: str | None
    uids: list[str]


def is_json_content_type(header: str | None) -> bool:
    """`application/json`, case-insensitive, parameters such as charset allowed."""
    if header is None:
        return False
    return header.split(";", 1)[0].strip().lower() == "application/json"


def parse_cohort_request(body: bytes) -> CohortRequest | ApiError:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return errors.MALFORMED_JSON
    if not isinstance(doc, dict):
        return errors.MALFORMED_JSON
    return _validate_document(doc)


def _validate_document(doc: dict[str, Any]) -> CohortRequest | ApiError:
    action = _required_string(doc, "action")
    if isinstance(action, ApiError):
        return action
    if action not in ACTIONS:
        return errors.invalid_attribute(
            "action", "action must be one of add_members, remove_members"
        )
    partner = _required_string(doc, "partner")
    if isinstance(partner, ApiError):
        return partner
    if "parameters" not in doc:
        return errors.missing_attribute("parameters")
    params = doc["parameters"]
    if not isinstance(params, dict):
        return errors.invalid_attribute("parameters", "parameters must be an object")
    return _validate_parameters(action, partner, params)


def _validate_parameters(
    action: str, partner: str, params: dict[str, Any]
) -> CohortRequest | ApiError:
    name = _required_string(params, "cohort_name")
    if isinstance(name, ApiError):
        return name
    name_error = check_cohort_name(name)
    if name_error is not None:
        return errors.invalid_attribute("cohort_name", name_error)
    cohort_id = _required_string(params, "cohort_id")
    if isinstance(cohort_id, ApiError):
        return cohort_id
    description = params.get("cohort_description")
    if "cohort_description" in params and not isinstance(description, str):
        return errors.invalid_attribute("cohort_description", "cohort_description must be a string")
    uids = _member_uids(params)
    if isinstance(uids, ApiError):
        return uids
    return CohortRequest(action, partner, cohort_id, name, description, uids)


def _required_string(container: dict[str, Any], key: str) -> str | ApiError:
    if key not in container:
        return errors.missing_attribute(key)
    value = container[key]
    if not isinstance(value, str) or not value:
        return errors.invalid_attribute(key, f"{key} must be a non-empty string")
    return value


def check_cohort_name(name: str) -> str | None:
    """Why `name` is refused as a cohort name, or None when it is acceptable."""
    if name.startswith("."):
        return "cohort_name must not start with '.'"
    bad = FORBIDDEN_NAME_CHARS.intersection(name)
    if bad:
        return f'cohort_name must not contain any of | * ? \\ : < > = $ " (found {min(bad)!r})'
    return None


def _member_uids(params: dict[str, Any]) -> list[str] | ApiError:
    if "members" not in params:
        return errors.missing_attribute("members")
    members = params["members"]
    if not isinstance(members, list) or not members:
        return errors.invalid_attribute("members", "members must be a non-empty list")
    # The hot loop of the emulator (~3,000 members per 128 KB body): map() with C-level
    # callables keeps it free of per-member bytecode; the slow scan runs only on errors.
    try:
        uids: list[Any] = list(map(dict.get, members, repeat("uid")))
    except TypeError:  # an element is not an object
        return _member_error(members)
    if "" in uids or set(map(type, uids)) != {str}:
        return _member_error(members)
    return uids


def _member_error(members: list[Any]) -> ApiError:
    index = next(
        i
        for i, m in enumerate(members)
        if not (type(m) is dict and type(m.get("uid")) is str and m["uid"])
    )
    return errors.invalid_attribute("members", f"members[{index}].uid must be a non-empty string")
