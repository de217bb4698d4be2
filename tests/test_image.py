"""The image operators deploy (issue 15, items 1, 2, 3, 5, 6): the repository's Dockerfile,
built by Debian's buildah, then run as the chart runs it.

The Dockerfile is built unchanged except for its base-image build args: where the public bases
cannot be pulled (as here), tests/tools/image_standins.sh makes STAND-INS for them, a bookworm
root filesystem with Python 3.11 from Debian (for python:3.11-slim) and the same plus this
machine's Rust toolchain (for rust:1-slim-bookworm), both trusting the machine's CA certificates.
Stand-ins and layers are cached (buildah's storage, ~/.cache/cohort-streamer/image): the first
run builds the Rust stage (minutes), a second run of an unchanged tree takes seconds.

Then, from that image, as uid 10001 on the host network with the config and credentials mounted
where the chart mounts them and /tmp as the only writable mount: `--version`; the streamer
against the test broker and the emulator (events land exactly, /healthz and /readyz answer,
SIGTERM to the container's process exits 0); the container's root filesystem is compared before
and after, so a write outside /tmp fails the test (the chart sets readOnlyRootFilesystem).
Skipped, with the reason, only where buildah cannot run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from streamer.dev.harness import write_config
from streamer.version import VERSION
from tests.fixtures.observe import http_get, metric, wait_for
from tests.fixtures.streamer import StreamerRig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "tests" / "tools" / "image_standins.sh"
CHART_README = ROOT / "helm" / "cohort-streamer" / "README.md"
UID = 10001
# where the chart mounts them (templates/deployment.yaml, _helpers.tpl credentialsDir)
CONFIG_DIR = "/etc/cohort-streamer"
CREDENTIALS_DIR = "/var/run/secrets/cohort-streamer"
# The chart README's commands use this registry; the test builds and pushes to local names.
README_REGISTRY = "registry.example.com"
LOCAL_NAME = f"localhost/cohort-streamer:{VERSION}"


def build_command(python_base: str, rust_base: str) -> list[str]:
    """The chart README's build command, plus the stand-in bases."""
    return [
        "buildah", "build", "--isolation", "chroot", "--format", "docker", "--layers",
        "--build-arg", f"PYTHON_IMAGE={python_base}", "--build-arg", f"RUST_IMAGE={rust_base}",
        "-t", LOCAL_NAME, ".",
    ]  # fmt: skip


def push_command(destination: str, digest_file: Path) -> list[str]:
    """The chart README's push command (there the destination is the registry)."""
    return ["buildah", "push", "--digestfile", str(digest_file), LOCAL_NAME, destination]


@dataclass
class Image:
    name: str
    python_base: str
    rust_base: str
    config: dict[str, Any]  # buildah inspect --type image


def _report(config: pytest.Config, text: str) -> None:
    """A line in pytest's output, past its output capture (the figures are the point)."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        print(f"test_image: {text}")
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"test_image: {text}")


def _run(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    shown = f"{' '.join(args)}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert result.returncode == 0, shown
    return result.stdout


_UNITS = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _size(image: str) -> float:
    """The image's size in bytes, as `buildah images` shows it (e.g. "245 MB")."""
    for entry in json.loads(_run("buildah", "images", "--json", image)):
        number, unit = str(entry["size"]).split()
        return float(number) * _UNITS[unit]
    raise AssertionError(f"{image} not in buildah images")


def _buildah_unusable() -> str | None:
    """Why buildah cannot run here, or None."""
    if os.geteuid() != 0:
        return "buildah builds with --isolation chroot as root; the tests do not run as root"
    tools = subprocess.run(
        [str(STANDINS), "--tools-only"], capture_output=True, text=True, timeout=900
    )
    if tools.returncode != 0:
        return f"buildah cannot be installed: {tools.stderr.strip()[-300:]}"
    info = subprocess.run(["buildah", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"buildah cannot run here: {info.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def image(pytestconfig: pytest.Config) -> Image:
    reason = _buildah_unusable()
    if reason is not None:
        pytest.skip(reason)
    started = time.monotonic()
    python_base, rust_base = _run(str(STANDINS), timeout=1800).split()
    _report(
        pytestconfig,
        f"building on STAND-INS, not the public bases (they cannot be pulled here): "
        f"{python_base} (Debian bookworm + python3.11, for python:3.11-slim) and {rust_base} "
        f"(+ this machine's Rust toolchain, for rust:1-slim-bookworm), "
        f"ready in {time.monotonic() - started:.0f} s",
    )
    started = time.monotonic()
    _run(*build_command(python_base, rust_base), timeout=1800)
    built = time.monotonic() - started
    size, base = _size(LOCAL_NAME), _size(python_base)
    _report(
        pytestconfig,
        f"built {LOCAL_NAME} in {built:.0f} s; {size / 1e6:.0f} MB on a {base / 1e6:.0f} MB "
        f"base (+{(size - base) / 1e6:.0f} MB)",
    )
    config = json.loads(_run("buildah", "inspect", "--type", "image", LOCAL_NAME))
    return Image(LOCAL_NAME, python_base, rust_base, config)


@contextlib.contextmanager
def container(image: Image) -> Iterator[tuple[str, Path]]:
    """A working container of the image and its mounted root filesystem."""
    name = _run("buildah", "from", "--pull-never", image.name).strip()
    try:
        yield name, Path(_run("buildah", "mount", name).strip())
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)


def run_args(name: str, *mounts: tuple[Path, str, str], env: dict[str, str]) -> list[str]:
    """`buildah run` as the chart runs the pod: uid 10001, host network, these mounts."""
    args = ["buildah", "run", "--isolation", "chroot", "--network", "host"]
    args += ["--user", f"{UID}:{UID}"]
    for source, target, options in mounts:
        args += ["-v", f"{source}:{target}:{options}"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return [*args, name, "--"]


def _inside(rootfs: Path, path: str) -> str:
    """`path` with the image's symlinks resolved (Debian's /var/run -> /run). buildah would
    follow an absolute link like that on the host, and mount beside the container."""
    resolved = "/"
    for part in Path(path).parts[1:]:
        candidate = os.path.join(resolved, part)
        link = rootfs / candidate.lstrip("/")
        if link.is_symlink():
            target = os.readlink(link)
            candidate = target if target.startswith("/") else os.path.join(resolved, target)
        resolved = os.path.normpath(candidate)
    return resolved


def _snapshot(rootfs: Path, skip: set[str]) -> dict[str, tuple[int, int, int, int]]:
    """path -> (mode, uid, size, mtime) of everything in the root filesystem but `skip`."""
    seen: dict[str, tuple[int, int, int, int]] = {}
    for top, dirs, files in os.walk(rootfs):
        rel = "/" + os.path.relpath(top, rootfs).lstrip(".")
        dirs[:] = [d for d in dirs if f"{rel.rstrip('/')}/{d}" not in skip]
        for entry in [*dirs, *files]:
            path = f"{rel.rstrip('/')}/{entry}"
            st = os.lstat(os.path.join(top, entry))
            seen[path] = (st.st_mode, st.st_uid, st.st_size, st.st_mtime_ns)
    return seen


# --- the image as built ------------------------------------------------------------------------


def test_the_image_carries_its_version_healthcheck_and_user(image: Image) -> None:
    docker = image.config["Docker"]["config"]
    assert docker["Labels"]["org.opencontainers.image.version"] == VERSION
    assert docker["User"] == f"{UID}:{UID}"
    assert "/healthz" in " ".join(docker["Healthcheck"]["Test"])  # kept by --format docker
    chart = (ROOT / "helm" / "cohort-streamer" / "Chart.yaml").read_text()
    assert re.search(rf'^appVersion: "{re.escape(VERSION)}"$', chart, re.M), "Chart appVersion"


def test_the_runtime_holds_no_compiler_cargo_or_headers(image: Image) -> None:
    forbidden = {"gcc", "cc", "cc1", "c++", "ld", "cargo", "rustc", "rustup", "rustdoc"}
    with container(image) as (_name, rootfs):
        found = []
        for top, dirs, files in os.walk(rootfs):
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
            found += [f"{top}/{f}" for f in files if f in forbidden or f.endswith(".h")]
            found += [f"{top}/{d}" for d in dirs if d in ("rustup", "cargo", "rustlib")]
        assert not found, f"build tools in the runtime image: {found[:20]}"
        assert not (rootfs / "src").exists(), "the build's source tree is in the runtime image"
        site = rootfs / "opt/venv/lib"
        assert list(site.glob("python3*/site-packages/streamer/_fastpath*.so")), (
            "the compiled extension is missing from the image"
        )


def test_the_build_context_holds_no_build_outputs(image: Image) -> None:
    """.dockerignore keeps build outputs out: the crate's target/ (hundreds of MB) and a locally
    compiled extension. The build stage's /src shows what the context carried."""
    canaries = [
        ROOT / "streamer" / "fastpath" / "target" / "context-canary",
        ROOT / "streamer" / "_fastpath.context-canary.so",
    ]
    made = [c for c in canaries if not c.exists()]
    made_dirs = [c.parent for c in made if not c.parent.exists()]
    for canary in made:
        canary.parent.mkdir(parents=True, exist_ok=True)
        canary.write_text("a build output: must not reach the build context")
    try:
        build = build_command(image.python_base, image.rust_base)
        build[build.index("-t") + 1] = f"localhost/cohort-streamer-build-stage:{VERSION}"
        _run(*build[:-1], "--target", "build", ".", timeout=1800)  # cached but for the context
    finally:
        for canary in made:
            canary.unlink()
        for directory in made_dirs:
            directory.rmdir()
    stage = Image(f"localhost/cohort-streamer-build-stage:{VERSION}", "", "", {})
    with container(stage) as (_name, rootfs):
        src = rootfs / "src" / "streamer"
        assert (src / "cli.py").exists(), "the build stage's source tree"
        assert not (src / "fastpath" / "target" / "context-canary").exists()
        assert not (src / "_fastpath.context-canary.so").exists()


def test_version_from_the_image(image: Image) -> None:
    with container(image) as (name, _rootfs):
        out = _run(*run_args(name, env={}), "cohort-streamer", "--version")
    assert out.strip() == f"cohort-streamer {VERSION}"


# --- the image runs the real streamer ----------------------------------------------------------


def _event(cohort: str, uid: str) -> bytes:
    return orjson.dumps({"action": "enter", "cohort_id": cohort, "cohort_name": cohort, "uid": uid})


def _owned_dir(path: Path, mode: int) -> Path:
    path.mkdir(parents=True)
    os.chown(path, UID, UID)
    path.chmod(mode)
    return path


def _container_process(runner: subprocess.Popen[bytes]) -> psutil.Process:
    """The streamer inside the container: the innermost process running `cohort-streamer` as
    uid 10001 (buildah-chroot-exec above it carries the same arguments). SIGTERM to `buildah
    run` itself would kill the child instead of stopping it."""
    found = []
    for child in psutil.Process(runner.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.uids().real == UID and any("cohort-streamer" in a for a in child.cmdline()):
                found.append(child)
    parents = {child.ppid() for child in found}
    innermost = [child for child in found if child.pid not in parents]
    assert len(innermost) == 1, f"the streamer process of the container: {found}"
    return innermost[0]


def test_the_image_runs_the_streamer_as_the_chart_does(
    image: Image, rig: StreamerRig, tmp_path: Path
) -> None:
    settings = rig.settings(log_format="json")
    port = settings["server"]["port"]
    config_dir = _owned_dir(tmp_path / "config", 0o755)
    write_config(config_dir / "streamer.yaml", settings)
    credentials = _owned_dir(tmp_path / "credentials", 0o750)
    secrets = {"workspace_id": rig.emulator.workspace_id, "api_key": rig.emulator.api_key}
    for file, value in secrets.items():
        (credentials / file).write_text(value)
        os.chown(credentials / file, UID, UID)
        (credentials / file).chmod(0o440)
    scratch = _owned_dir(tmp_path / "tmp", 0o1777)  # the chart's emptyDir on /tmp
    docker = image.config["Docker"]["config"]
    command = [*docker["Entrypoint"], *docker["Cmd"]]  # what the chart's pod runs
    env = {
        "MOENGAGE_WORKSPACE_ID_FILE": f"{CREDENTIALS_DIR}/workspace_id",
        "MOENGAGE_API_KEY_FILE": f"{CREDENTIALS_DIR}/api_key",
    }
    messages = [(f"u{i}".encode(), _event(f"c{i % 4}", f"u{i}")) for i in range(2000)]
    expected = {f"c{c}": {f"u{i}" for i in range(2000) if i % 4 == c} for c in range(4)}
    log_file = tmp_path / "container.log"
    with container(image) as (name, rootfs):
        mounts = [
            (config_dir, _inside(rootfs, CONFIG_DIR), "ro"),
            (credentials, _inside(rootfs, CREDENTIALS_DIR), "ro"),
            (scratch, "/tmp", "rw"),
        ]
        # buildah's own: /etc/hosts, /etc/resolv.conf, /run (mount points, .containerenv)
        skip = {"/proc", "/sys", "/dev", "/run", "/tmp", "/etc/hosts", "/etc/resolv.conf"}
        before = _snapshot(rootfs, skip)
        with log_file.open("wb") as out:
            runner = subprocess.Popen(
                [*run_args(name, *mounts, env=env), *command], stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_for(lambda: _answers(port, "/healthz", runner, log_file), 60, "/healthz")
            streamer = _container_process(runner)
            rig.produce(messages)
            rig.wait_caught_up(120)
            rig.assert_state(expected)
            assert http_get(port, "/healthz")[0] == 200
            assert http_get(port, "/readyz")[0] == 200
            assert metric(port, "cohort_streamer_build_info", version=VERSION) == 1
            streamer.send_signal(signal.SIGTERM)
            code = runner.wait(60)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        logs = log_file.read_text(errors="replace")
        assert code == 0, f"exit {code}\n{logs[-3000:]}"
        after = _snapshot(rootfs, skip)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"written outside /tmp: {changed[:20]}"
    first = orjson.loads(logs.splitlines()[0])
    assert first["message"].startswith(f"cohort-streamer {VERSION} starting"), first


def _answers(port: int, path: str, runner: subprocess.Popen[bytes], log_file: Path) -> bool:
    if runner.poll() is not None:
        pytest.fail(f"the container exited {runner.returncode}:\n{log_file.read_text()}")
    try:
        return http_get(port, path)[0] == 200
    except OSError:
        return False


# --- the chart's commands are the ones run here ------------------------------------------------


def test_the_chart_readme_commands_are_the_ones_the_test_ran(image: Image, tmp_path: Path) -> None:
    """Build (above), push (here, to an archive instead of the registry), install with the
    pushed digest: the chart README shows these commands, only the registry differs."""
    digest_file = tmp_path / "digest"
    _run(*push_command(f"oci-archive:{tmp_path / 'image.tar'}", digest_file), timeout=600)
    digest = digest_file.read_text().strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    readme = CHART_README.read_text()
    at_registry = LOCAL_NAME.replace("localhost", README_REGISTRY)
    build = [a for a in build_command("", "") if not a.startswith(("PYTHON_IMAGE", "RUST_IMAGE"))]
    build = [a for a in build if a != "--build-arg"]
    shown_build = " ".join(build).replace(LOCAL_NAME, at_registry)
    shown_push = " ".join(push_command("", Path("digest"))[:-1]).replace(LOCAL_NAME, at_registry)
    shown = " ".join(readme.replace("\\\n", " ").split())
    for command in (shown_build, shown_push):
        assert command in shown, f"the chart README does not show: {command}"
    # the README's install, rendered: its --set flags with the pushed digest
    install = re.search(r"helm upgrade --install cohort-streamer \S+ (.*?) helm test", shown)
    assert install, "the chart README's install command"
    sets = install.group(1).replace("$(cat digest)", digest).split()
    sets = [a for a in sets if a not in ("-n", "streaming")]
    assert f"image.digest={digest}" in sets
    assert shutil.which("helm"), "helm: run `bash tests/tools/ensure_tools.sh`, put its bin on PATH"
    chart = str(ROOT / "helm" / "cohort-streamer")
    out = _run("helm", "template", "cohort-streamer", chart, *sets)
    assert f'image: "{at_registry}@{digest}"' in out
