"""The v3 filter grammar (moengage-api.md §5.2), checked exactly, and the definition limits.

`check_definition(doc)` returns the `included_filters` with defaults filled in (`negate` and
`case_sensitive` false, `attributes` an empty "and" group), or the ApiError the API answers:

- any deviation from §5.2 -> 400 "Invalid Request" naming the path, e.g.
  `included_filters.filters[1].operator`: unknown keys, missing keys, wrong types, an operator
  that does not suit the `data_type`, `value1` outside `between`, a value of the wrong kind
  (an array for `in` and the `...InTheFollowing` operators; numbers for `double`; ISO-8601 for
  datetime `on`/`before`/`after`/`between`; a positive whole number for `inTheLast`/`inTheNext`;
  a boolean for bool `is`; none for `exists`/`today`), a `between` whose lower bound is above
  its upper one;
- action filters: `execution.count` a whole number >= 1 for atleast/exactly, >= 0 for atmost
  (firstTime/lastTime ignore it but it is still required, as documented); the time range
  `inTheLast` with `relative_past` and an integer-as-string value, the others with `absolute`
  and ISO-8601 values, `value1` exactly for `between`;
- the boolean `true` where `"on"` belongs (§8.10: YAML 1.1 reads `on` as true) -> 400 that
  says to send the string "on";
- nesting: the grammar allows one level below the top group (an action filter's `attributes`);
  an action filter inside those attributes -> 413 "Query has too many nesting levels";
- size: more than MAX_FILTERS filters in all, or a definition above MAX_DEFINITION_BYTES of
  JSON -> 413 "Query length limit exceeded".

Segment references (412 "Cyclic Entity", 413 "Too many segments in a query") are not modelled:
§5.2 has no filter type that names another segment, so no definition can reference one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import ApiError

MAX_FILTERS = 100
MAX_DEFINITION_BYTES = 64 * 1024

OPERATORS: dict[str, frozenset[str]] = {
    "bool": frozenset({"is", "exists"}),
    "double": frozenset({"in", "between", "lessThan", "greaterThan", "exists"}),
    "string": frozenset(
        {
            "in",
            "contains",
            "containsInTheFollowing",
            "startWithInTheFollowing",
            "endsWithInTheFollowing",
            "exists",
            "is",
        }
    ),
    "datetime": frozenset(
        {"inTheLast", "on", "between", "before", "after", "inTheNext", "exists", "today"}
    ),
}
LIST_OPERATORS = frozenset(
    {"in", "containsInTheFollowing", "startWithInTheFollowing", "endsWithInTheFollowing"}
)
NO_VALUE_OPERATORS = frozenset({"exists", "today"})
EXECUTION_TYPES = frozenset({"atleast", "exactly", "atmost", "firstTime", "lastTime"})
TIME_RANGE_TYPES = frozenset({"on", "inTheLast", "before", "after", "between"})
PERIOD_UNITS = frozenset({"days", "weeks", "months"})
_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)?")

_ATTRIBUTE_KEYS = {
    *("filter_type", "name", "data_type", "operator", "value", "value1"),
    *("negate", "case_sensitive"),
}
_ACTION_KEYS = {
    *("filter_type", "action_name", "executed", "execution", "primary_time_range", "attributes")
}
# §5.3's wording for every bad-filter or bad-name 400.
INVALID_HINT = (
    "Please check that the filters are correct and the custom-segment name doesn't contain "
    "HTML characters/only whitespaces."
)
_TIME_RANGE_KEYS = {"type", "value_type", "value", "value1", "period_unit"}


class Invalid(Exception):
    """A grammar violation: `path` names where, the message says what."""

    def __init__(self, path: str, message: str, status: int = 400) -> None:
        super().__init__(f"{path}: {message}")
        self.status = status


def check_definition(doc: Any) -> dict[str, Any] | ApiError:
    try:
        group = _group(doc, "included_filters", depth=0)
    except Invalid as exc:
        if exc.status == 413:
            message = f"{exc}. The query has more than 2 levels of nesting."
            return ApiError(413, "Query has too many nesting levels", message)
        return ApiError(400, "Invalid Request", f"{exc}. {INVALID_HINT}")
    if _count_filters(group) > MAX_FILTERS or len(orjson.dumps(group)) > MAX_DEFINITION_BYTES:
        return ApiError(
            413,
            "Query length limit exceeded",
            f"The query is too large to execute (at most {MAX_FILTERS} filters and "
            f"{MAX_DEFINITION_BYTES} bytes).",
        )
    return group


def definition_key(group: dict[str, Any]) -> bytes:
    """Two definitions are the same when their filled-in forms are equal, key order aside."""
    return orjson.dumps(group, option=orjson.OPT_SORT_KEYS)


def _group(doc: Any, path: str, depth: int) -> dict[str, Any]:
    obj = _object(doc, path, {"filter_operator", "filters"})
    operator = obj.get("filter_operator")
    if operator not in ("and", "or"):
        raise Invalid(f"{path}.filter_operator", "must be 'and' or 'or'")
    filters = obj.get("filters")
    if not isinstance(filters, list):
        raise Invalid(f"{path}.filters", "must be an array")
    if depth == 0 and not filters:
        raise Invalid(f"{path}.filters", "must hold at least one filter")
    checked = [_filter(f, f"{path}.filters[{i}]", depth) for i, f in enumerate(filters)]
    return {"filter_operator": operator, "filters": checked}


def _filter(doc: Any, path: str, depth: int) -> dict[str, Any]:
    kind = doc.get("filter_type") if isinstance(doc, dict) else None
    if kind == "user_attributes":
        return _attribute(doc, path)
    if kind == "actions":
        if depth > 0:
            raise Invalid(path, "an action filter inside an action's attributes", status=413)
        return _action(doc, path)
    raise Invalid(f"{path}.filter_type", "must be 'user_attributes' or 'actions'")


def _attribute(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _object(doc, path, _ATTRIBUTE_KEYS)
    _string(doc, "name", path)
    data_type = doc.get("data_type")
    if data_type not in OPERATORS:
        raise Invalid(f"{path}.data_type", "must be one of bool, datetime, double, string")
    operator = _operator(doc.get("operator"), f"{path}.operator")
    if operator not in OPERATORS[data_type]:
        allowed = ", ".join(sorted(OPERATORS[data_type]))
        raise Invalid(f"{path}.operator", f"'{operator}' does not suit {data_type} ({allowed})")
    if "value1" in doc and operator != "between":
        raise Invalid(f"{path}.value1", "is for 'between' only")
    _attribute_value(doc, data_type, operator, path)
    out = dict(doc)
    for flag in ("negate", "case_sensitive"):
        if not isinstance(out.setdefault(flag, False), bool):
            raise Invalid(f"{path}.{flag}", "must be true or false")
    return out


def _attribute_value(doc: dict[str, Any], data_type: str, operator: str, path: str) -> None:
    if operator in NO_VALUE_OPERATORS:
        if "value" in doc:
            raise Invalid(f"{path}.value", f"'{operator}' takes no value")
        return
    if "value" not in doc:
        raise Invalid(f"{path}.value", f"'{operator}' needs a value")
    value = doc["value"]
    if operator in LIST_OPERATORS:
        if not isinstance(value, list) or not value:
            raise Invalid(f"{path}.value", f"'{operator}' needs a non-empty array")
        for i, item in enumerate(value):
            _scalar(item, data_type, f"{path}.value[{i}]")
        return
    if operator in ("inTheLast", "inTheNext"):
        if not _whole(value) or value < 1:
            raise Invalid(f"{path}.value", f"'{operator}' needs a whole number of days >= 1")
        return
    _scalar(value, data_type, f"{path}.value")
    if operator == "between":
        if "value1" not in doc:
            raise Invalid(f"{path}.value1", "'between' needs value1, the upper bound")
        _scalar(doc["value1"], data_type, f"{path}.value1")
        if _ordered(doc["value1"], data_type) < _ordered(value, data_type):
            raise Invalid(f"{path}.value1", "the upper bound is below value")


def _scalar(value: Any, data_type: str, path: str) -> None:
    if data_type == "string" and not isinstance(value, str):
        raise Invalid(path, "must be a string")
    if data_type == "double" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise Invalid(path, "must be a number")
    if data_type == "bool" and not isinstance(value, bool):
        raise Invalid(path, "must be true or false")
    if data_type == "datetime":
        _iso(value, path)


def _ordered(value: Any, data_type: str) -> Any:
    return _when(value) if data_type == "datetime" else value


def _when(text: str) -> datetime:
    """A datetime comparable with any other: a value without a zone is read as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _action(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _object(doc, path, _ACTION_KEYS)
    _string(doc, "action_name", path)
    if not isinstance(doc.get("executed"), bool):
        raise Invalid(f"{path}.executed", "must be true or false")
    out = dict(doc)
    out["execution"] = _execution(doc.get("execution"), f"{path}.execution")
    out["primary_time_range"] = _time_range(
        doc.get("primary_time_range"), f"{path}.primary_time_range"
    )
    attributes = doc.get("attributes", {"filter_operator": "and", "filters": []})
    out["attributes"] = _group(attributes, f"{path}.attributes", depth=1)
    return out


def _execution(doc: Any, path: str) -> dict[str, Any]:
    obj = _object(doc, path, {"type", "count"})
    kind = obj.get("type")
    if kind not in EXECUTION_TYPES:
        raise Invalid(f"{path}.type", "must be one of " + ", ".join(sorted(EXECUTION_TYPES)))
    count: Any = obj.get("count")
    least = 0 if kind == "atmost" else 1
    if not _whole(count) or count < least:
        raise Invalid(f"{path}.count", f"must be a whole number >= {least}")
    return {"type": kind, "count": count}


def _time_range(doc: Any, path: str) -> dict[str, Any]:
    obj = _object(doc, path, _TIME_RANGE_KEYS)
    kind = _operator(obj.get("type"), f"{path}.type")
    if kind not in TIME_RANGE_TYPES:
        raise Invalid(f"{path}.type", "must be one of " + ", ".join(sorted(TIME_RANGE_TYPES)))
    if obj.get("period_unit") not in PERIOD_UNITS:
        raise Invalid(f"{path}.period_unit", "must be one of days, months, weeks")
    relative = kind == "inTheLast"
    expected = "relative_past" if relative else "absolute"
    if obj.get("value_type") != expected:
        raise Invalid(f"{path}.value_type", f"'{kind}' needs value_type '{expected}'")
    value: Any = obj.get("value")
    if relative:
        if not isinstance(value, str) or not value.isdigit() or int(value) < 1:
            raise Invalid(f"{path}.value", "must be a whole number >= 1 written as a string")
    else:
        _iso(value, f"{path}.value")
    if (kind == "between") != ("value1" in obj):
        raise Invalid(f"{path}.value1", "is required for 'between' and only for it")
    if kind == "between":
        _iso(obj["value1"], f"{path}.value1")
        if _when(obj["value1"]) < _when(value):
            raise Invalid(f"{path}.value1", "the end is before the start")
    return dict(obj)


def _object(doc: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise Invalid(path, "must be an object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise Invalid(f"{path}.{unknown[0]}", "is not part of the grammar")
    return doc


def _string(doc: dict[str, Any], key: str, path: str) -> None:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{path}.{key}", "must be a non-empty string")


def _operator(value: Any, path: str) -> str:
    if value is True:
        raise Invalid(path, "is the boolean true; send the string \"on\" (§8.10)")
    if not isinstance(value, str):
        raise Invalid(path, "must be a string")
    return value


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _iso(value: Any, path: str) -> None:
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        raise Invalid(path, "must be an ISO-8601 datetime like 2022-12-21T00:00:00.000Z")


def _count_filters(group: dict[str, Any]) -> int:
    total = 0
    for item in group["filters"]:
        total += 1
        if item["filter_type"] == "actions":
            total += _count_filters(item["attributes"])
    return total
