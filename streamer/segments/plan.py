"""Segments as code: what a `segments.yaml` asks for, compared with what the workspace holds.

A declared filter segment is matched by name. Its step is:
- create: no segment has the name;
- update: an active filter segment has the name and another definition (or one the API does
  not show, §8.11);
- leave: an active filter segment has the name and the same definition;
- unarchive (then update when the definition differs): the filter segment is archived;
- conflict: the name belongs to a Cohort Sync or file segment, which v3 cannot change (403).
With prune, every other active filter segment is archived (never a Cohort Sync or file one).

Definitions are compared with the API's defaults filled in (`negate` and `case_sensitive`
false, an empty `attributes` group): the API echoes them back, so a file that leaves them out
would otherwise differ on every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from . import documents
from .documents import DocumentError

FILTER_TYPE = "ELASTIC_SEARCH"  # §5.4: the type of a filter segment in a listing


@dataclass(frozen=True, slots=True)
class Declared:
    name: str
    included_filters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Manifest:
    segments: list[Declared]
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class Step:
    action: str  # create | update | leave | unarchive | unarchive+update | archive | conflict
    name: str
    id: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "name": self.name, "id": self.id, "reason": self.reason}


def load_manifest(path: Path) -> Manifest:
    doc = documents.load(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("segments"), list):
        raise DocumentError(f"{path}: expected a mapping with a `segments` list")
    updated_by = doc.get("updated_by")
    if updated_by is not None and not isinstance(updated_by, str):
        raise DocumentError(f"{path}: updated_by: expected an email address")
    declared: list[Declared] = []
    for index, item in enumerate(doc["segments"]):
        where = f"{path}: segments[{index}]"
        if not isinstance(item, dict) or set(item) != {"name", "included_filters"}:
            raise DocumentError(f"{where}: expected exactly `name` and `included_filters`")
        name, filters = item["name"], item["included_filters"]
        if not isinstance(name, str) or not name.strip():
            raise DocumentError(f"{where}.name: expected a non-empty string")
        if not isinstance(filters, dict):
            raise DocumentError(f"{where}.included_filters: expected a filter group")
        if any(d.name == name for d in declared):
            raise DocumentError(f"{where}.name: {name!r} is declared twice")
        declared.append(Declared(name, filters))
    return Manifest(declared, updated_by)


def plan(
    manifest: Manifest,
    listing: Sequence[Mapping[str, Any]],
    definitions: Mapping[str, dict[str, Any] | None],
    prune: bool,
) -> list[Step]:
    """`listing`: the v3 list items; `definitions`: id -> included_filters read back (None:
    not shown) for the segments `needs_definition` named."""
    steps = [_step(d, listing, definitions) for d in manifest.segments]
    if prune:
        declared = {d.name for d in manifest.segments}
        steps += [
            Step("archive", item["name"], item["id"], "not declared")
            for item in listing
            if _is_filter(item) and not item.get("archived") and item["name"] not in declared
        ]
    return steps


def needs_definition(manifest: Manifest, listing: Sequence[Mapping[str, Any]]) -> list[str]:
    """Ids of the filter segments whose definition decides between update and leave."""
    names = {d.name for d in manifest.segments}
    return [item["id"] for item in listing if _is_filter(item) and item["name"] in names]


def _step(
    declared: Declared,
    listing: Sequence[Mapping[str, Any]],
    definitions: Mapping[str, dict[str, Any] | None],
) -> Step:
    same_name = [item for item in listing if item["name"] == declared.name]
    if not same_name:
        return Step("create", declared.name, None, "no segment has this name")
    filters = [item for item in same_name if _is_filter(item)]
    if not filters:
        kind = same_name[0].get("type")
        return Step("conflict", declared.name, same_name[0]["id"],
                    f"the name belongs to a {kind} segment, which v3 cannot change")  # fmt: skip
    item = min(filters, key=lambda i: bool(i.get("archived")))  # an active one first
    current = definitions.get(item["id"])
    differs = current is None or canonical(current) != canonical(declared.included_filters)
    why = "definition differs" if current is not None else "definition not shown by the API"
    if item.get("archived"):
        action = "unarchive+update" if differs else "unarchive"
        return Step(action, declared.name, item["id"], "archived" + (f"; {why}" if differs else ""))
    if differs:
        return Step("update", declared.name, item["id"], why)
    return Step("leave", declared.name, item["id"], "up to date")


def _is_filter(item: Mapping[str, Any]) -> bool:
    return item.get("type") == FILTER_TYPE


def canonical(group: Any) -> bytes:
    return orjson.dumps(_with_defaults(group), option=orjson.OPT_SORT_KEYS)


def _with_defaults(value: Any) -> Any:
    if isinstance(value, list):
        return [_with_defaults(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _with_defaults(v) for k, v in value.items()}
    if out.get("filter_type") == "user_attributes":
        out.setdefault("negate", False)
        out.setdefault("case_sensitive", False)
    if out.get("filter_type") == "actions":
        out.setdefault("attributes", {"filter_operator": "and", "filters": []})
    return out
