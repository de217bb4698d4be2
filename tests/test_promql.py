"""Every PromQL expression of the dashboard and the alerts, evaluated by a real Prometheus.

The real `cohort-streamer run` consumes from the test broker and calls the emulator; a real
`prometheus` (Debian's, from `bash tests/tools/ensure_tools.sh`) scrapes it every second and
loads the chart's alert rules. Then every dashboard query and alert expression goes through the
Prometheus HTTP API: a query error, a metric name without any series, or a label matcher that
matches nothing fails the test, so a renamed metric or label cannot silently blank a panel.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from streamer.dev.devkafka import client_conf, create_topic, free_port
from streamer.dev.harness import StreamerProcess, wait_caught_up, write_config
from streamer.dev.sample import generate, produce
from streamer.emulator import EmulatorThread
from streamer.metrics import DLQ_REASONS, Metrics
from tests.fixtures.emulator import API_KEY, WORKSPACE_ID, EmulatorClient, default_config
from tests.fixtures.observe import fetch, http_get, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "cohort-streamer"
DASHBOARD = CHART / "dashboards" / "cohort-streamer.json"
RULES = CHART / "rules" / "alerts.yaml"
JOB = "cohort-streamer"
# Grafana variables -> what they mean for one job on a test Prometheus
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1s",
    "$job": ".*",
    "$instance": ".*",
}
SELECTOR = re.compile(r"\b(cohort_streamer_[a-z0-9_]+|up)\b(\{[^}]*\})?(?!\s*\()")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every target of every panel, rows included."""
    doc = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            out.extend((panel["title"], target) for target in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(doc["panels"])
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every dashboard query."""
    return [(title, target["expr"]) for title, target in dashboard_targets()]


def panel_targets(title: str) -> list[tuple[str, str]]:
    """(legend, expr) of every target of the panel called `title`."""
    return [
        (t["legendFormat"], t["expr"]) for t_title, t in dashboard_targets() if t_title == title
    ]


def dashboard_variable_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]


def alert_expressions() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def substitute(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


@dataclass
class Prometheus:
    url: str
    log_file: Path

    def api(self, path: str, **params: str) -> dict[str, Any]:
        status, body = fetch(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        try:
            doc: dict[str, Any] = json.loads(body)
        except ValueError:
            doc = {"status": "error", "error": f"HTTP {status}: {body[:200]!r}"}
        return doc

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("/api/v1/query", query=expr)

    def scalar(self, expr: str) -> float:
        doc = self.query(expr)
        assert doc["status"] == "success", doc
        result = doc["data"]["result"]
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def series(self, selector: str) -> list[dict[str, str]]:
        start = str(time.time() - 600)
        doc = self.api("/api/v1/series", **{"match[]": selector, "start": start})
        assert doc["status"] == "success", f"{selector}: {doc}"
        series: list[dict[str, str]] = doc["data"]
        return series

    def logs(self) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-30:]
        except OSError:
            return ""
        return "--- prometheus log ---\n" + "\n".join(tail)


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is not on PATH: run `bash tests/tools/ensure_tools.sh` "
            "(installs Debian's prometheus package)",
            pytrace=False,
        )
    return binary


def start_prometheus(workdir: Path, target_port: int) -> tuple[subprocess.Popen[bytes], Prometheus]:
    """prometheus scraping 127.0.0.1:target_port every second, with the chart's alert rules."""
    binary = prometheus_binary()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log_file = workdir / "prometheus.log"
    with log_file.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    return proc, Prometheus(f"http://127.0.0.1:{port}", log_file)


@dataclass
class ScrapedStreamer:
    prometheus: Prometheus
    produced: int
    invalid: int


@pytest.fixture(scope="module")
def scraped_streamer(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScrapedStreamer]:
    """A streamer that has processed a sample log while a real Prometheus scraped it.

    Module-scoped (one streamer, one Prometheus for every check here), so it makes its own
    topics, group and emulator rather than using the per-test fixtures.
    """
    tmp_path = tmp_path_factory.mktemp("promql")
    suffix = uuid.uuid4().hex[:12]
    topic, dlq_topic, group = f"promql-{suffix}", f"promql-dlq-{suffix}", f"g-promql-{suffix}"
    create_topic(kafka_bootstrap, topic, partitions=3)
    create_topic(kafka_bootstrap, dlq_topic, partitions=1)
    with EmulatorThread(default_config()) as running:
        emulator = EmulatorClient(running.url, WORKSPACE_ID, API_KEY)
        yield from _run_and_scrape(kafka_bootstrap, topic, dlq_topic, group, emulator, tmp_path)
    admin = AdminClient(client_conf(kafka_bootstrap))
    for future in admin.delete_topics([topic, dlq_topic], operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)


def _run_and_scrape(
    kafka_bootstrap: str,
    topic: str,
    dlq_topic: str,
    group: str,
    emulator: EmulatorClient,
    tmp_path: Path,
) -> Iterator[ScrapedStreamer]:
    metrics_port = free_port()
    settings = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": group,
            "topics": [topic],
            "dlq_topic": dlq_topic,
            "commit_interval_ms": 200,
        },
        "moengage": {"base_url": emulator.url, "timeout_seconds": 5},
        "batching": {"linger_ms": 200},
        "server": {"host": "127.0.0.1", "port": metrics_port},
    }
    config = write_config(tmp_path / "streamer.yaml", settings)
    env = {"MOENGAGE_WORKSPACE_ID": emulator.workspace_id, "MOENGAGE_API_KEY": emulator.api_key}
    streamer = StreamerProcess(config, env, tmp_path / "streamer.log", metrics_port).start()
    prometheus_proc: subprocess.Popen[bytes] | None = None
    try:

        def streamer_logs() -> str:
            return "--- streamer log ---\n" + streamer.log_tail(40)

        def ready() -> bool:
            if not streamer.alive():
                pytest.fail(f"the streamer exited\n{streamer_logs()}")
            return http_get(metrics_port, "/readyz")[0] == 200

        wait_for(ready, 90, "the streamer's /readyz", logs=streamer_logs)
        prometheus_proc, prometheus = start_prometheus(tmp_path, metrics_port)

        def scraped(samples: int) -> Callable[[], bool]:
            def check() -> bool:
                if prometheus_proc is not None and prometheus_proc.poll() is not None:
                    pytest.fail(f"prometheus exited\n{prometheus.logs()}")
                doc = prometheus.query(f'count_over_time(up{{job="{JOB}"}}[5m])')
                result = doc.get("data", {}).get("result", [])
                return bool(result) and float(result[0]["value"][1]) >= samples

            return check

        wait_for(scraped(2), 60, "the first scrapes", logs=prometheus.logs)
        log = generate(events=3000, cohorts=8, users=400, seed=5, invalid_every=60)
        produce(kafka_bootstrap, topic, log.messages)
        try:
            wait_caught_up(kafka_bootstrap, group, [topic], timeout=120)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{streamer_logs()}")
        # a few scrapes after the last commit and lag update, so rates and gauges are current
        first = prometheus.query(f'count_over_time(up{{job="{JOB}"}}[5m])')["data"]["result"]
        wait_for(
            scraped(int(float(first[0]["value"][1])) + 7), 60, "more scrapes", logs=prometheus.logs
        )
        yield ScrapedStreamer(prometheus, len(log.messages), log.invalid)
    finally:
        if prometheus_proc is not None:
            prometheus_proc.terminate()
            try:
                prometheus_proc.wait(30)
            except subprocess.TimeoutExpired:
                prometheus_proc.kill()
                prometheus_proc.wait()
        if streamer.alive():
            streamer.terminate()


def test_every_dashboard_and_alert_expression_evaluates_on_real_data(
    scraped_streamer: ScrapedStreamer,
) -> None:
    prom = scraped_streamer.prometheus
    problems: list[str] = []
    expressions = [
        (f"panel {title!r}", substitute(t["expr"]), t.get("legendFormat", ""))
        for title, t in dashboard_targets()
    ]
    expressions += [(f"alert {name}", expr, None) for name, expr in alert_expressions()]
    for where, expr, legend in expressions:
        doc = prom.query(expr)
        if doc["status"] != "success":
            problems.append(f"{where}: query error {doc.get('error')}: {expr}")
            continue
        result = doc["data"]["result"]
        if legend is not None and not result:  # a dashboard query must show something
            problems.append(f"{where}: no data: {expr}")
        # every {{label}} of a legend must be a label of the series the query returns
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", legend or ""):
            if result and not all(label in series["metric"] for series in result):
                problems.append(f"{where}: legend label {label!r} not in the result: {expr}")
        for match in SELECTOR.finditer(expr):
            selector = match.group(0)
            if not prom.series(selector):
                problems.append(f"{where}: no series match {selector}")
    for definition in dashboard_variable_queries():
        parsed = LABEL_VALUES.match(substitute(definition))
        assert parsed, f"variable query {definition} is not label_values(selector, label)"
        selector, label = parsed.groups()
        doc = prom.api(f"/api/v1/label/{label}/values", **{"match[]": selector})
        if doc["status"] != "success" or not doc["data"]:
            problems.append(f"variable {definition}: no values ({doc})")
    assert not problems, "\n".join(problems) + "\n" + prom.logs()


def test_the_scraped_numbers_match_what_was_produced(scraped_streamer: ScrapedStreamer) -> None:
    prom = scraped_streamer.prometheus
    consumed = prom.scalar(f'sum(cohort_streamer_events_consumed_total{{job="{JOB}"}})')
    assert consumed == scraped_streamer.produced
    dead_lettered = prom.scalar(f'sum(cohort_streamer_dlq_writes_total{{job="{JOB}"}})')
    assert dead_lettered == scraped_streamer.invalid
    # the dashboard's headline panels show the traffic that went through
    headline = {title: expr for title, expr in dashboard_queries()}
    for title in ("Events/s", "Requests/s by action and status class"):
        peak = prom.scalar(f"max(max_over_time(({substitute(headline[title])})[3m:1s]))")
        assert peak > 0, f"panel {title!r} never showed traffic"
    assert prom.scalar(f'sum(cohort_streamer_consumer_lag{{job="{JOB}"}})') == 0
    assert prom.scalar(f'max(cohort_streamer_auth_failing{{job="{JOB}"}})') == 0
    # the budget panels: the workspace budget as configured (the default 300), and the shares
    # of the group (here one replica) within it
    budget_use = dict(panel_targets("Budget use of the group"))
    assert prom.scalar(substitute(budget_use["workspace budget (req/min)"])) == 300
    shares = dict(panel_targets("Share per replica"))
    share = prom.scalar(f"sum({substitute(shares['{{instance}}'])})")
    assert 0 < share <= 300, share


def test_prometheus_loads_and_evaluates_every_alert_rule(scraped_streamer: ScrapedStreamer) -> None:
    prom = scraped_streamer.prometheus
    doc = prom.api("/api/v1/rules")
    assert doc["status"] == "success", doc
    rules = {r["name"]: r for g in doc["data"]["groups"] for r in g["rules"]}
    assert set(rules) == {name for name, _ in alert_expressions()}
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        assert rule["lastEvaluation"] != "0001-01-01T00:00:00Z", f"{name} was never evaluated"
    # The sample log dead-letters one event in 60, well above the DLQ alert's 1/minute: that
    # alert is pending (it would page after its `for`); nothing else is, on a healthy streamer.
    states = {name: rule["state"] for name, rule in rules.items()}
    assert states.pop("CohortStreamerDLQWrites") == "pending"
    assert set(states.values()) == {"inactive"}, states
    pending = rules["CohortStreamerDLQWrites"]["alerts"]
    assert {a["labels"]["reason"] for a in pending} <= set(DLQ_REASONS)
    assert all(a["labels"]["job"] == JOB for a in pending)


# --- static checks of the dashboard (no processes) ---------------------------------------------


def test_dashboard_charts_every_metric_of_the_contract() -> None:
    families = {m.name for m in Metrics(CollectorRegistry()).registry.collect()}
    referenced = {m.group(1) for _, e in dashboard_queries() for m in SELECTOR.finditer(e)}
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    missing = sorted(f for f in families if not any(f + s in referenced for s in suffixes))
    assert not missing, f"metrics no dashboard panel shows: {missing}"


def test_dashboard_panels_cover_what_operators_watch() -> None:
    titles = {title for title, _ in dashboard_queries()}
    for wanted in (
        "Events/s",
        "Requests/s by action and status class",
        "Request duration p50 / p99",
        "Event to acknowledgement p50 / p99",
        "Members per request",
        "Body fill",
        "Budget use of the group",
        "Share per replica",
        "Demand against the budget",
        "Effective linger per replica",
        "Budget tokens per replica",
        "Group members seen per replica",
        "Rate-limiter wait p50 / p99",
        "Buffered events and catch-up",
        "Buffered bytes",
        "Partitions and in-flight requests",
        "Consumer lag per partition",
        "DLQ writes by reason",
        "Commits",
        "Auth failing",
        "Rebalances",
    ):
        assert wanted in titles, wanted


def test_every_dashboard_query_uses_the_datasource_and_job_variables() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "job", "instance"}
    for title, expr in dashboard_queries():
        for match in SELECTOR.finditer(expr):
            assert 'job=~"$job"' in (match.group(2) or ""), f"{title}: {match.group(0)}"
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel.get("description"), panel["title"]
