"""One version, from the package metadata (issue 15, item 5): `--version`, the build-info gauge
and the chart's appVersion say the same (the image label: tests/test_image.py)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from streamer.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent


def test_version_flag_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "--version"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cohort-streamer {version('cohort-streamer')}"


def test_build_info_gauge_names_the_version() -> None:
    text = generate_latest(Metrics().registry).decode()
    [line] = [x for x in text.splitlines() if x.startswith("cohort_streamer_build_info{")]
    assert f'version="{version("cohort-streamer")}"' in line
    assert 'python_version="' in line and 'librdkafka_version="' in line
    assert line.endswith(" 1.0")


def test_the_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((ROOT / "helm" / "cohort-streamer" / "Chart.yaml").read_text())
    assert chart["appVersion"] == version("cohort-streamer")


def test_the_dockerfile_labels_the_package_version() -> None:
    """The build refuses a mismatch too; this says so before anyone builds."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"\nARG VERSION={version('cohort-streamer')}\n" in dockerfile
    assert 'org.opencontainers.image.version="${VERSION}"' in dockerfile
