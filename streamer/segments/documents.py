"""Reading the user's JSON and YAML files: segment definitions and segments-as-code.

YAML 1.1 reads `on`, `off`, `yes`, `no` as booleans, so a datetime filter written
`operator: on` would reach the API as `true` (the mangling §8.10 found in the v3 spec itself).
Every YAML file of this tool is read with YAML 1.2's booleans, `true`/`false` only: `on` stays
the string "on". This is the one place that reading is decided.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import yaml

from .command import UsageError


class DocumentError(UsageError):
    """A file that cannot be used: one line naming the file and the problem."""


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false (any case), as in YAML 1.2."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load(path: Path) -> Any:
    """A JSON (`.json`) or YAML (anything else) file's content."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            return orjson.loads(text)
        return yaml.load(text, Loader=_Yaml12Loader)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DocumentError(f"{path}: not valid JSON/YAML: {first_line}") from None


def load_definition(path: Path) -> dict[str, Any]:
    """A filter definition: either a FilterGroup, or an object holding `included_filters`."""
    doc = load(path)
    if isinstance(doc, dict) and "included_filters" in doc:
        doc = doc["included_filters"]
    if not isinstance(doc, dict):
        raise DocumentError(f"{path}: a definition is an object with filter_operator and filters")
    return doc
