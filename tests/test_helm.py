"""The Helm chart, checked with the real helm and the Kubernetes API schemas.

`helm lint` and `helm template` run over every ci/*-values.yaml; each rendered manifest is
validated with kubernetes-validate (strict: unknown fields are errors) for the oldest and the
newest Kubernetes the chart supports. The Prometheus Operator objects have no schema there, so
their structure is checked here. helm comes from `bash tests/tools/ensure_tools.sh`.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streamer.config import load_settings
from tests.fixtures.helm import (
    CHART,
    NAMESPACE,
    RELEASE,
    find,
    helm,
    helm_binary,
    one,
    render,
    template_result,
)

pytestmark = pytest.mark.slow  # runs the real helm (about 10 s for the module)

CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
DEFAULTS = CHART / "ci" / "default-values.yaml"
# Oldest (Chart.yaml kubeVersion) and newest Kubernetes the manifests must be valid for.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
CONFIG_PATH = "/etc/cohort-streamer/streamer.yaml"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def streamer_config(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    configmaps = [m for m in find(manifests, "ConfigMap") if "streamer.yaml" in m["data"]]
    assert len(configmaps) == 1
    config: dict[str, Any] = yaml.safe_load(configmaps[0]["data"]["streamer.yaml"])
    return config


def streamer_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["streamer"]
    container: dict[str, Any] = containers[0]
    return container


def ci_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


def test_there_are_several_ci_variants() -> None:
    names = {ci_id(p) for p in CI_VALUES}
    assert {"default", "existing-secret-monitoring", "base-url", "replay"} <= names


# --- helm lint / template over every variant ---------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_helm_lint_strict(values: Path) -> None:
    result = helm("lint", "--strict", "--namespace", NAMESPACE, "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(values: Path, kube_version: str) -> None:
    manifests = render(values)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "ConfigMap", "Service"} <= kinds
    for manifest in manifests:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in CRD_KINDS:
            continue  # checked by test_prometheus_operator_objects_are_well_formed
        try:
            kubernetes_validate.validate(manifest, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message}")


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_every_name_is_a_valid_dns_label_and_namespaced(values: Path) -> None:
    for manifest in render(values):
        name = manifest["metadata"]["name"]
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert manifest["metadata"]["namespace"] == NAMESPACE
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_a_long_fullname_is_cut_to_63_characters() -> None:
    manifests = render(CHART / "ci" / "base-url-values.yaml")
    override = yaml.safe_load((CHART / "ci" / "base-url-values.yaml").read_text())[
        "fullnameOverride"
    ]
    assert len(override) > 63
    assert one(manifests, "Deployment")["metadata"]["name"] == override[:63].rstrip("-")


# --- the Deployment: probes, security, shutdown, credentials -----------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_the_app_accepts_the_rendered_config(values: Path, tmp_path: Path) -> None:
    """streamer.yaml from the ConfigMap goes through the streamer's own config model."""
    path = tmp_path / "streamer.yaml"
    path.write_text(yaml.safe_dump(streamer_config(render(values))), encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9464


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_probes_hit_healthz_and_readyz_on_the_metrics_port(values: Path) -> None:
    manifests = render(values)
    container = streamer_container(one(manifests, "Deployment"))
    port = streamer_config(manifests)["server"]["port"]
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    assert container["args"] == ["run", "--config", CONFIG_PATH]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/cohort-streamer"]["name"] == "config"


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_pods_run_non_root_with_a_read_only_root_filesystem(values: Path) -> None:
    manifests = render(values)
    pods = [one(manifests, "Deployment")["spec"]["template"]["spec"]]
    pods += [job["spec"]["template"]["spec"] for job in find(manifests, "Job")]
    pods += [p["spec"] for p in find(manifests, "Pod")]  # the helm test pod
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, container["name"]
            assert security["allowPrivilegeEscalation"] is False, container["name"]
            assert security["capabilities"]["drop"] == ["ALL"], container["name"]
            assert container["resources"]["requests"]["memory"], container["name"]
            assert container["resources"]["limits"]["memory"], container["name"]
    deployment_pod = pods[0]
    tmp_mounts = [
        m
        for m in streamer_container({"spec": {"template": {"spec": deployment_pod}}})[
            "volumeMounts"
        ]
        if m["mountPath"] == "/tmp"
    ]
    assert len(tmp_mounts) == 1
    volumes = {v["name"]: v for v in deployment_pod["volumes"]}
    assert "emptyDir" in volumes[tmp_mounts[0]["name"]]


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_grace_period_exceeds_the_shutdown_flush_deadline(values: Path) -> None:
    manifests = render(values)
    grace = one(manifests, "Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    flush = streamer_config(manifests)["deadlines"]["shutdown_flush_seconds"]
    assert grace >= flush + 5


def test_a_grace_period_shorter_than_the_flush_deadline_is_refused() -> None:
    result = template_result(
        DEFAULTS,
        sets=("config.deadlines.shutdown_flush_seconds=30", "terminationGracePeriodSeconds=30"),
    )
    assert result.returncode != 0
    assert "terminationGracePeriodSeconds (30) must be at least" in result.stderr


def test_rolling_updates_never_run_more_pods_than_replicas() -> None:
    strategy = one(render(DEFAULTS), "Deployment")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }


def _credential_files(deployment: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(secret name, {env var: secret key}) as the pod sees them."""
    pod = deployment["spec"]["template"]["spec"]
    container = streamer_container(deployment)
    env = {e["name"]: e for e in container["env"]}
    assert "MOENGAGE_API_KEY" not in env and "MOENGAGE_WORKSPACE_ID" not in env
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert len(secret_volumes) == 1
    volume = secret_volumes[0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath would freeze rotation
    key_of_file = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    keys = {}
    for var in ("MOENGAGE_WORKSPACE_ID_FILE", "MOENGAGE_API_KEY_FILE"):
        directory, _, file_name = env[var]["value"].rpartition("/")
        assert directory == mount["mountPath"], var
        keys[var] = key_of_file[file_name]
    return volume["secret"]["secretName"], keys


def test_credentials_come_from_the_chart_secret_as_files() -> None:
    manifests = render(DEFAULTS)
    secret = one(manifests, "Secret")
    secret_name, keys = _credential_files(one(manifests, "Deployment"))
    assert secret_name == secret["metadata"]["name"]
    values = yaml.safe_load(DEFAULTS.read_text())["credentials"]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded[keys["MOENGAGE_WORKSPACE_ID_FILE"]] == values["workspaceId"]
    assert decoded[keys["MOENGAGE_API_KEY_FILE"]] == values["apiKey"]


def test_existing_secret_is_used_and_no_secret_is_rendered() -> None:
    values = CHART / "ci" / "existing-secret-monitoring-values.yaml"
    manifests = render(values)
    assert find(manifests, "Secret") == []
    secret_name, keys = _credential_files(one(manifests, "Deployment"))
    assert secret_name == "moengage-credentials"
    assert keys == {
        "MOENGAGE_WORKSPACE_ID_FILE": "MOENGAGE_WORKSPACE_ID",
        "MOENGAGE_API_KEY_FILE": "MOENGAGE_API_KEY",
    }


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("sets", "image"),
    [
        ((), "cohort-streamer:{app}"),
        (("image.tag=1.2.3",), "cohort-streamer:1.2.3"),
        ((f"image.digest={DIGEST}",), f"cohort-streamer:{{app}}@{DIGEST}"),
        (
            ("image.repository=r.example/cs", "image.tag=v2", f"image.digest={DIGEST}"),
            f"r.example/cs:v2@{DIGEST}",
        ),
    ],
)
def test_the_pod_runs_the_image_by_tag_or_pinned_by_digest(
    sets: tuple[str, ...], image: str
) -> None:
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    container = streamer_container(one(render(DEFAULTS, sets=sets), "Deployment"))
    assert container["image"] == image.format(app=app)


def test_the_chart_logs_json_by_default() -> None:
    assert streamer_config(render(DEFAULTS))["log_format"] == "json"


def test_missing_credentials_without_existing_secret_fail_rendering() -> None:
    result = template_result(DEFAULTS, sets=("credentials.apiKey=",))
    assert result.returncode != 0
    assert "credentials.apiKey is required" in result.stderr


# --- the rendered config ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "replicas"), [(300, 1), (300, 3), (250, 3), (2, 3), (300, 7), (100, 0)]
)
def test_every_pod_gets_the_whole_workspace_budget(total: int, replicas: int) -> None:
    """The group's members divide the budget themselves: the chart never splits it."""
    manifests = render(
        DEFAULTS, sets=(f"rateBudget.requestsPerMinute={total}", f"replicaCount={replicas}")
    )
    assert one(manifests, "Deployment")["spec"]["replicas"] == replicas
    assert streamer_config(manifests)["moengage"]["rate_limit_per_minute"] == total


def test_a_budget_below_one_request_per_minute_is_refused() -> None:
    result = template_result(DEFAULTS, sets=("rateBudget.requestsPerMinute=0",))
    assert result.returncode != 0
    assert "/rateBudget/requestsPerMinute" in result.stderr


def test_data_center_or_base_url_never_both() -> None:
    default = streamer_config(render(DEFAULTS))["moengage"]
    assert default["data_center"] == "01" and "base_url" not in default
    with_url = streamer_config(render(CHART / "ci" / "base-url-values.yaml"))["moengage"]
    assert with_url["base_url"] == "http://moengage-emulator.test.svc:8080"
    assert "data_center" not in with_url


def _checksum(*sets: str) -> str:
    deployment = one(render(DEFAULTS, sets=sets), "Deployment")
    checksum: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert re.fullmatch(r"[0-9a-f]{64}", checksum)
    return checksum


def test_config_checksum_changes_with_the_config_only() -> None:
    base = _checksum()
    assert _checksum() == base  # deterministic
    assert _checksum("config.batching.linger_ms=500") != base
    assert _checksum("rateBudget.requestsPerMinute=250") != base
    assert _checksum("replicaCount=3") == base  # scaling does not roll the pods
    assert _checksum("resources.limits.memory=1Gi", "podAnnotations.team=cohorts") == base


# --- values.schema.json -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("replicaCount=-1", "/replicaCount"),
        ("config.moengage.data_center=07", "/config/moengage/data_center"),
        ("config.log_level=VERBOSE", "/config/log_level"),
        ("config.kafka.bootstrap_servers=", "/config/kafka/bootstrap_servers"),
        ("config.kafka.typo_key=1", "/config/kafka"),
        ("config.moengage.rate_limit_per_minute=1000", "/config/moengage"),
        ("config.kafka.consumer.group\\.id=other", "/config/kafka/consumer"),
        # the app's own bounds (streamer/config.py), refused at render time too
        ("config.kafka.consume_batch_size=2000000", "/config/kafka/consume_batch_size"),
        ("config.kafka.queued_max_messages_kbytes=99999999", "/config/kafka"),
        ("config.kafka.producer.acks=1", "/config/kafka/producer"),
        ("config.kafka.topics[0]=^regex.*", "/config/kafka/topics"),
        ("config.moengage.base_url=ftp://api-01.moengage.com", "/config/moengage/base_url"),
        ("config.moengage.base_url=https://u:p@api-01.moengage.com", "/config/moengage/base_url"),
        ("config.moengage.timeout_seconds=100000", "/config/moengage/timeout_seconds"),
        ("config.batching.linger_ms=100000000", "/config/batching/linger_ms"),
        ("replay.mode=yesterday", "/replay/mode"),
        ("podDisruptionBudget.unhealthyPodEvictionPolicy=Never", "/podDisruptionBudget"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("image.digest=latest", "/image/digest"),
        ("image.digest=sha256:abc", "/image/digest"),
        ("config.log_format=xml", "/config/log_format"),
        ("prometheusRule.disabledAlerts[0]=NoSuchAlert", "/prometheusRule/disabledAlerts"),
    ],
)
def test_values_schema_rejects_bad_values(setting: str, complaint: str) -> None:
    result = template_result(DEFAULTS, sets=(setting,))
    assert result.returncode != 0, f"{setting} was accepted"
    assert complaint in result.stderr, result.stderr


def test_helm_lint_fails_on_a_schema_violation() -> None:
    result = helm("lint", "-f", str(DEFAULTS), "--set", "config.moengage.data_center=07")
    assert result.returncode != 0
    assert "data_center" in result.stdout + result.stderr


def _walk(values: dict[str, Any], schema: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        assert key in schema.get("properties", {}), f"{path}{key} is not in values.schema.json"
        sub = schema["properties"][key]
        assert sub.get("description"), f"{path}{key} has no description in values.schema.json"
        yield f"{path}{key}", sub
        if isinstance(value, dict) and "properties" in sub:
            yield from _walk(value, sub, f"{path}{key}.")


def test_every_value_has_a_schema_entry_with_a_description() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    walked = dict(_walk(values, schema, ""))
    assert "config.kafka.bootstrap_servers" in walked
    assert walked["replay.mode"]["enum"] == ["earliest", "latest", "datetime", "offset", "shift-by"]


def test_every_value_in_values_yaml_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not match:
            continue  # comments, list items, blank lines
        previous = lines[number - 1].strip() if number else ""
        if "#" not in line and not previous.startswith("#"):
            uncommented.append(f"line {number + 1}: {line.strip()}")
    assert not uncommented, "values without a comment:\n" + "\n".join(uncommented)


# --- selectors, PDB, Service, monitoring -------------------------------------------------------


@pytest.mark.parametrize("values", CI_VALUES, ids=ci_id)
def test_selectors_are_name_and_instance_only_and_match_only_streamer_pods(values: Path) -> None:
    manifests = render(values)
    deployment = one(manifests, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == SELECTOR_KEYS
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert one(manifests, "Service")["spec"]["selector"] == selector
    for pdb in find(manifests, "PodDisruptionBudget"):
        assert pdb["apiVersion"] == "policy/v1"
        assert pdb["spec"]["selector"]["matchLabels"] == selector
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    helper_pods = [j["spec"]["template"] for j in find(manifests, "Job")] + find(manifests, "Pod")
    for pod in helper_pods:
        assert not selector.items() <= pod["metadata"]["labels"].items(), "Service would select it"


def test_the_service_exposes_the_metrics_port() -> None:
    service = one(render(DEFAULTS), "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = {m["kind"] for m in render(DEFAULTS)}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert "PodDisruptionBudget" in kinds


def test_prometheus_operator_objects_are_well_formed() -> None:
    manifests = render(CHART / "ci" / "existing-secret-monitoring-values.yaml")
    service = one(manifests, "Service")
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    port_names = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])

    rule = one(manifests, "PrometheusRule")
    source = yaml.safe_load((CHART / "rules" / "alerts.yaml").read_text())
    source_rules = {r["alert"]: r for g in source["groups"] for r in g["rules"]}
    rendered_rules = {}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "rules", "interval"} and group["name"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert isinstance(r["expr"], str) and DURATION.match(r["for"])
            assert all(isinstance(v, str) for v in {**r["labels"], **r["annotations"]}.values())
            rendered_rules[r["alert"]] = r
    # disabledAlerts drops one; every other alert is the file's, plus the additional label
    assert set(rendered_rules) == set(source_rules) - {"CohortStreamerDLQWrites"}
    for name, r in rendered_rules.items():
        assert r["expr"] == source_rules[name]["expr"]
        assert r["annotations"] == source_rules[name]["annotations"]
        assert r["labels"] == {**source_rules[name]["labels"], "team": "cohorts"}


def test_additional_alert_labels_do_not_override_severity() -> None:
    manifests = render(
        DEFAULTS,
        sets=("prometheusRule.enabled=true", "prometheusRule.additionalAlertLabels.severity=info"),
    )
    rules = [r for g in one(manifests, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    source = yaml.safe_load((CHART / "rules" / "alerts.yaml").read_text())
    assert len(rules) == sum(len(g["rules"]) for g in source["groups"])
    assert {r["labels"]["severity"] for r in rules} == {"warning", "critical"}


# --- dashboard ------------------------------------------------------------------------------


def test_dashboard_configmap_carries_the_json_for_the_grafana_sidecar() -> None:
    manifests = render(CHART / "ci" / "existing-secret-monitoring-values.yaml")
    (dashboard,) = [
        m for m in find(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Streaming"}
    shipped = json.loads(dashboard["data"]["cohort-streamer.json"])
    assert shipped == json.loads((CHART / "dashboards" / "cohort-streamer.json").read_text())
    assert shipped["uid"] == "cohort-streamer"


def test_dashboard_can_be_switched_off() -> None:
    manifests = render(CHART / "ci" / "base-url-values.yaml")
    assert not [m for m in find(manifests, "ConfigMap") if "-dashboard" in m["metadata"]["name"]]


# --- replay Job, helm test, NOTES ---------------------------------------------------------------


def test_no_replay_job_unless_enabled() -> None:
    assert find(render(DEFAULTS), "Job") == []


def test_replay_job_runs_the_replay_cli_with_the_chart_config() -> None:
    manifests = render(CHART / "ci" / "replay-values.yaml")
    assert one(manifests, "Deployment")["spec"]["replicas"] == 0
    job = one(manifests, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1  # retries while the old pods leave the group
    (container,) = pod["containers"]
    assert container["image"] == streamer_container(one(manifests, "Deployment"))["image"]
    assert container["args"] == [
        "replay", "--config", CONFIG_PATH,
        "--to-datetime", "2024-05-01T00:00:00Z",
        "--topic", "cohort-membership",
        "--partitions", "0,2",
        "--execute",
    ]  # fmt: skip
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = next(
        m for m in container["volumeMounts"] if m["mountPath"] == "/etc/cohort-streamer"
    )
    assert (
        volumes[config_mount["name"]]["configMap"]["name"]
        == one(manifests, "Deployment")["metadata"]["name"]
    )
    assert "secret" not in json.dumps(volumes)  # an offset reset needs no MoEngage credentials


@pytest.mark.parametrize(
    ("sets", "tail"),
    [
        (("replay.mode=earliest",), ["--to-earliest", "--execute"]),
        (("replay.mode=latest", "replay.dryRun=true"), ["--to-latest", "--dry-run"]),
        (("replay.mode=offset", "replay.offset=1200"), ["--to-offset", "1200", "--execute"]),
        (("replay.mode=shift-by", "replay.shiftBy=-500"), ["--shift-by", "-500", "--execute"]),
    ],
)
def test_replay_modes_map_to_cli_flags(sets: tuple[str, ...], tail: list[str]) -> None:
    manifests = render(DEFAULTS, sets=("replay.enabled=true", "replicaCount=0", *sets))
    (container,) = one(manifests, "Job")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["replay", "--config", CONFIG_PATH, *tail]


def test_replay_job_args_parse_with_the_real_cli() -> None:
    from streamer.cli import build_parser

    manifests = render(CHART / "ci" / "replay-values.yaml")
    (container,) = one(manifests, "Job")["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "replay"


def test_replay_job_name_follows_its_arguments() -> None:
    def job_name(*sets: str) -> str:
        manifests = render(DEFAULTS, sets=("replay.enabled=true", "replicaCount=0", *sets))
        name: str = one(manifests, "Job")["metadata"]["name"]
        assert len(name) <= 63
        return name

    assert job_name("replay.mode=earliest") == job_name("replay.mode=earliest")
    assert job_name("replay.mode=earliest") != job_name("replay.mode=latest")


def test_replay_datetime_mode_needs_a_datetime() -> None:
    result = template_result(DEFAULTS, sets=("replay.enabled=true", "replay.mode=datetime"))
    assert result.returncode != 0
    assert "datetime" in result.stderr


def test_helm_test_pod_checks_healthz_through_the_service() -> None:
    manifests = render(DEFAULTS)
    (pod,) = find(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    script = "\n".join(container["command"])
    service = one(manifests, "Service")["metadata"]["name"]
    assert f"http://{service}:9464/healthz" in script
    compile(container["command"][-1], "helm-test", "exec")  # the inline Python is valid


def _notes(values: Path, tmp_path: Path) -> str:
    """NOTES.txt as rendered (helm template skips it, so a copy of the chart renders it)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes_for_test.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart / "templates" / "notes-for-test.yaml").write_text(
        'notes: {{ include "test.notes" . | toJson }}\n'
    )
    result = subprocess.run(
        [helm_binary(), "template", RELEASE, str(chart), "-n", NAMESPACE, "-f", str(values),
         "--show-only", "templates/notes-for-test.yaml"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text


def test_notes_tell_the_budget_and_the_replay_procedure(tmp_path: Path) -> None:
    notes = _notes(CHART / "ci" / "existing-secret-monitoring-values.yaml", tmp_path)
    assert "Replicas: 3, sharing the workspace budget of 250 Cohort Sync requests/minute" in notes
    assert "Secret moengage-credentials" in notes
    assert "--set replicaCount=0" in notes and "replay.enabled=true" in notes
    replay_notes = _notes(CHART / "ci" / "replay-values.yaml", tmp_path / "replay")
    assert "REPLAY: a Job resets the offsets of group cohort-streamer" in replay_notes
    assert "WARNING" not in replay_notes  # replicaCount is 0 there
