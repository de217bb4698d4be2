"""`segments create|update` (v3) from JSON and YAML files, output and exit codes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.fixtures.emulator import EmulatorClient
from tests.fixtures.segments_cli import SegmentsCli

YAML_DEFINITION = """\
filter_operator: and
filters:
  - filter_type: user_attributes
    name: Signed up
    data_type: datetime
    operator: on          # YAML 1.1 would read this as true (§8.10)
    value: "2024-01-01T00:00:00Z"
  - filter_type: actions
    action_name: MOE_EMAIL_SENT
    executed: yes         # a string: refused by the API, not silently true
    execution: {type: atleast, count: 1}
    primary_time_range: {type: inTheLast, value_type: relative_past, value: "7", period_unit: days}
"""


def test_create_from_yaml_keeps_on_a_string(segments_cli: SegmentsCli, tmp_path: Path) -> None:
    definition = tmp_path / "def.yaml"
    definition.write_text(YAML_DEFINITION.replace("executed: yes ", "executed: true"))
    result = segments_cli("--json", "create", "-f", str(definition), "--name", "Signed up")
    assert result.code == 0, result.err
    segment = result.json()["data"]
    assert segment["included_filters"]["filters"][0]["operator"] == "on"

    # `yes` is a string under YAML 1.2 booleans: the API refuses it, exit 1 with its message
    definition.write_text(YAML_DEFINITION)
    refused = segments_cli("create", "-f", str(definition), "--name", "Other")
    assert refused.code == 1
    assert "400" in refused.err and "executed" in refused.err


def test_create_update_get_text_and_json(segments_cli: SegmentsCli, tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    first.write_bytes(orjson.dumps({"included_filters": group("Pune")}))
    created = segments_cli("create", "-f", str(first), "--name", "Pune")
    assert created.code == 0, created.err
    assert created.out.startswith("created Pune (")
    segment_id = created.out.split("(")[1].split(")")[0]

    second = tmp_path / "second.json"
    second.write_bytes(orjson.dumps(group("Goa")))
    updated = segments_cli(
        "update", segment_id, "-f", str(second), "--name", "Goa", "--updated-by", "a@b.io", "--json"
    )
    assert updated.code == 0, updated.err
    assert updated.json()["data"]["name"] == "Goa"
    got = segments_cli("get", segment_id, "--json").json()["data"][0]
    assert got["included_filters"]["filters"][0]["value"] == ["Goa"]


def group(city: str) -> dict[str, object]:
    return {
        "filter_operator": "and",
        "filters": [
            {
                "filter_type": "user_attributes",
                "name": "City",
                "data_type": "string",
                "operator": "in",
                "value": [city],
            }
        ],
    }


def test_api_refusals_exit_1_with_the_api_message(
    segments_cli: SegmentsCli, emulator: EmulatorClient, tmp_path: Path
) -> None:
    definition = tmp_path / "d.json"
    definition.write_bytes(orjson.dumps(group("Pune")))
    assert segments_cli("create", "-f", str(definition), "--name", "A").code == 0
    duplicate = segments_cli("create", "-f", str(definition), "--name", "B")
    assert duplicate.code == 1
    assert "409" in duplicate.err and "containing the given filters: A" in duplicate.err
    missing = segments_cli("update", "0" * 24, "-f", str(definition))
    assert missing.code == 1 and "404" in missing.err
    emulator.configure(active_segments_limit=1)
    definition.write_bytes(orjson.dumps(group("Goa")))
    capped = segments_cli("create", "-f", str(definition), "--name", "C")
    assert capped.code == 1 and "Total active segments limit" in capped.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "-f", "missing.yaml", "--name", "x"), "cannot read"),
        (("create", "-f", "{bad}", "--name", "x"), "not valid JSON/YAML"),
        (("create", "-f", "{list}", "--name", "x"), "a definition is an object"),
        (("create", "--name", "x"), "required"),
        (("create", "-f", "{list}"), "required"),
        (("update",), "required"),
        (("nonsense",), "invalid choice"),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    segments_cli: SegmentsCli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    paths = {"{bad}": str(tmp_path / "bad.json"), "{list}": str(tmp_path / "list.yaml")}
    result = segments_cli(*[paths.get(a, a) for a in args])
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err


COMMANDS = [
    ("list",), ("get",), ("create",), ("update",), ("archive",), ("unarchive",),
    ("file", "create"), ("file", "add"), ("file", "remove"), ("file", "replace"),
    ("plan",), ("apply",), ("callbacks",),
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_json(segments_cli: SegmentsCli, command: tuple[str]) -> None:
    result = segments_cli(*command, "--help")
    assert result.code == 0
    assert "--json" in result.out and "usage:" in result.out
