"""The alert rules, checked with the real promtool.

`promtool check rules` on helm/cohort-streamer/rules/alerts.yaml (the file the chart's
PrometheusRule loads) and `promtool test rules` on the unit tests beside it. Mutation checks
prove the unit tests have teeth: an alert that never fires, or always fires, must fail them.
promtool comes from `bash tests/tools/ensure_tools.sh` (Debian's prometheus package).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.helm import CHART, one, render

pytestmark = pytest.mark.slow  # each case runs promtool: seconds each

RULES = CHART / "rules" / "alerts.yaml"
RULE_TESTS = CHART / "rules" / "alerts_test.yaml"
# What issue 6 asks the alerts to cover, by alert name.
REQUIRED_ALERTS = {
    "CohortStreamerConsumerLagGrowing",  # consumer lag growing
    "CohortStreamerCredentialsFailing",  # credentials failing (auth_failing gauge)
    "CohortStreamerEndpointMisconfigured",  # the endpoint redirects (endpoint_misconfigured gauge)
    "CohortStreamerDLQWrites",  # DLQ rate
    "CohortStreamerNoCommit",  # no commit for N minutes (last_commit_timestamp)
    "CohortStreamerRateLimited",  # sustained 429s
    "CohortStreamerDown",  # process down
    "CohortStreamerBudgetExceeded",  # issue 14: the group's demand above the workspace budget
}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail(
            "promtool is not on PATH: run `bash tests/tools/ensure_tools.sh` "
            "(installs Debian's prometheus package)",
            pytrace=False,
        )
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alert_rules(path: Path = RULES) -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_cover_what_operators_page_on() -> None:
    rules = alert_rules()
    assert set(rules) >= REQUIRED_ALERTS
    expressions = {name: rule["expr"] for name, rule in rules.items()}
    assert "cohort_streamer_auth_failing" in expressions["CohortStreamerCredentialsFailing"]
    misconfigured = expressions["CohortStreamerEndpointMisconfigured"]
    assert "cohort_streamer_endpoint_misconfigured" in misconfigured
    assert "cohort_streamer_last_commit_timestamp_seconds" in expressions["CohortStreamerNoCommit"]
    assert 'status_class="429"' in expressions["CohortStreamerRateLimited"]
    assert "cohort_streamer_dlq_writes_total" in expressions["CohortStreamerDLQWrites"]
    assert "cohort_streamer_consumer_lag" in expressions["CohortStreamerConsumerLagGrowing"]
    exceeded = expressions["CohortStreamerBudgetExceeded"]
    # the group's summed demand against the budget every member sees (not a sum of budgets)
    assert "sum by (namespace, job) (cohort_streamer_budget_demand_per_minute)" in exceeded
    assert "max by (namespace, job) (cohort_streamer_budget_per_minute)" in exceeded
    assert rules["CohortStreamerBudgetExceeded"]["for"] == "15m"


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_every_alert_is_actionable(name: str) -> None:
    rule = alert_rules()[name]
    assert re.fullmatch(r"[0-9]+m", rule["for"]), "a `for` keeps blips from paging"
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert "uid" not in rule["expr"]


def _unit_test_cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return cases


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_every_alert_has_a_firing_and_a_silent_unit_test(name: str) -> None:
    checks = [
        check
        for case in _unit_test_cases()
        for check in case.get("alert_rule_test", [])
        if check["alertname"] == name
    ]
    assert any(check.get("exp_alerts") for check in checks), f"no test where {name} fires"
    assert any(not check.get("exp_alerts") for check in checks), f"no test where {name} is silent"


def _mutated_run(tmp_path: Path, name: str, expr: str) -> subprocess.CompletedProcess[str]:
    """promtool test rules against a copy of alerts.yaml where `name` has expression `expr`."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == name:
                rule["expr"] = expr
    (tmp_path / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)


def _failed_cases(output: str) -> list[str]:
    return re.findall(r"name: (.+),\n\s+alertname: (\w+)", output)


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_unit_tests_catch_an_alert_that_never_fires(name: str, tmp_path: Path) -> None:
    result = _mutated_run(tmp_path, name, "vector(1) == 0")
    assert result.returncode != 0, f"the unit tests pass even if {name} can never fire"
    assert any(alert == name for _, alert in _failed_cases(result.stdout + result.stderr))


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_unit_tests_catch_an_alert_that_always_fires(name: str, tmp_path: Path) -> None:
    # The original expression OR'ed with a label-less always-true series: the firing cases may
    # still pass, so the failure must come from a case that expects silence.
    original = alert_rules()[name]["expr"].strip()
    result = _mutated_run(tmp_path, name, f"({original}) or vector(1)")
    assert result.returncode != 0, f"the unit tests pass even if {name} always fires"
    failed = _failed_cases(result.stdout + result.stderr)
    assert any(alert == name and "silent" in case for case, alert in failed), failed


def test_the_chart_prometheusrule_passes_promtool(tmp_path: Path) -> None:
    """What the chart deploys (file + additional labels - disabled alerts) is a valid rule file."""
    manifests = render(CHART / "ci" / "existing-secret-monitoring-values.yaml")
    spec = one(manifests, "PrometheusRule")["spec"]
    rule_file = tmp_path / "deployed-rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules()) - 1} rules found" in result.stdout
