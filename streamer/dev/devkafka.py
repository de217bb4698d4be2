"""A disposable single-node Apache Kafka (KRaft) for tests, the demo and the benchmark.

Why this exists: the design asks for a *real* broker in the tests, built from the official jars,
without Docker. So the project provisions one itself:

* the jars come from Maven Central through Maven (a throw-away pom.xml, then
  ``mvn dependency:copy-dependencies``) into ``$XDG_CACHE_HOME/cohort-streamer/kafka-<version>``,
  once per machine;
* the broker runs in KRaft combined mode (broker + controller, one node) on free loopback ports,
  as a detached process group, and everything it writes lives in one data directory;
* readiness means "a consumer group can commit an offset", because that is what the streamer
  needs and what comes up last on a fresh broker (the group coordinator).

Command line::

    python -m streamer.dev.devkafka start|stop|status|ensure [--dir DIR] [--port P] [--keep-data]

``start``/``ensure`` print the bootstrap address on stdout, so
``export KAFKA_BOOTSTRAP_SERVERS=$(python -m streamer.dev.devkafka ensure)`` works.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # typed here; admin re-exports it implicitly

log = logging.getLogger(__name__)

KAFKA_VERSION = os.environ.get("DEVKAFKA_KAFKA_VERSION", "4.1.1")
LOG4J_VERSION = "2.24.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
PROBE_TOPIC = "_devkafka_probe"
PROBE_GROUP = "_devkafka_probe"
# Heap and GC for a small shared machine. Startup-tuned by default: C1-only JIT halves the JVM's
# start time (about 3.5 s instead of 6-7 s on 2 loaded cores), which matters because every test
# session and every restart test pays it. A benchmark should pass THROUGHPUT_JVM_OPTS instead,
# so broker CPU per message is that of a normal deployment.
THROUGHPUT_JVM_OPTS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
STARTUP_JVM_OPTS: tuple[str, ...] = (*THROUGHPUT_JVM_OPTS, "-XX:TieredStopAtLevel=1")
DEFAULT_DIR = Path(".devkafka")

# Files this module creates inside a data dir; `stop()` removes only these, never the dir's
# other contents, so a mistyped --dir cannot wipe anything that is not ours.
_OWNED = (
    "kraft-logs",
    "logs",
    "server.properties",
    "log4j2.properties",
    "broker.out",
    "state.json",
)


class DevKafkaError(RuntimeError):
    """The dev broker could not be provisioned, started, reached or stopped."""


# --------------------------------------------------------------------------------------------
# Jars: fetched once per machine with Maven
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Per-user cache directory (XDG), shared by every checkout and test run on the machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cohort-streamer"


def _pom(version: str) -> str:
    """The pom that pulls the broker jar, its runtime deps and a log4j2 binding for slf4j 1.x.

    Kafka 4.x jars depend on slf4j-api 1.7 and log4j-api only; without a binding the broker
    logs nothing, so log4j-core + log4j-slf4j-impl are added and configured per data dir.
    """
    deps = (
        ("org.apache.kafka", "kafka_2.13", version),
        ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
    )
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cohort-streamer</groupId>
  <artifactId>devkafka-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId>
    <artifactId>maven-dependency-plugin</artifactId>
    <version>{DEPENDENCY_PLUGIN_VERSION}</version>
  </plugin></plugins></build>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise jar downloads: several test sessions may start at once on a shared machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the directory holding the broker's classpath, downloading it on first use.

    The marker holds the pom it was built from, so changing a pinned version re-fetches;
    the copy goes to a temporary directory first so an interrupted download is never used.
    """
    home = cache_root() / f"kafka-{version}"
    libs, marker, pom = home / "libs", home / ".complete", _pom(version)
    with _file_lock(home / ".lock"):
        if marker.exists() and marker.read_text() == pom and libs.is_dir():
            return libs
        (home / "pom.xml").write_text(pom)
        staging = home / "libs.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        _run_maven(home, staging)
        if not any(staging.glob(f"kafka_2.13-{version}.jar")):
            raise DevKafkaError(f"Maven finished but kafka_2.13-{version}.jar is not in {staging}")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(pom)
    return libs


def _run_maven(project: Path, output: Path) -> None:
    """Run copy-dependencies; Maven's own output is kept only for the error message."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevKafkaError("Maven ('mvn') is needed to fetch the Kafka jars; install it first")
    cmd = [
        mvn, "-q", "-B", "-Dstyle.color=never", "dependency:copy-dependencies",
        f"-DoutputDirectory={output}", "-DincludeScope=runtime",
    ]  # fmt: skip
    log.info("fetching Kafka jars into %s (first use only)", output.parent)
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise DevKafkaError(f"mvn failed with exit code {done.returncode}:\n{tail}")


def _java() -> str:
    """JAVA_HOME wins over PATH, as with Kafka's own scripts; Kafka 4.x needs Java 17+."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise DevKafkaError("no 'java' on PATH and no JAVA_HOME; Kafka 4.x needs Java 17+")
    return found


# --------------------------------------------------------------------------------------------
# Configuration files
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free loopback port (the kernel picks it; a tiny race is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def new_cluster_id() -> str:
    """Kafka's cluster-id format (a UUID as 22 url-safe base64 chars), without spawning a JVM.

    An id starting with '-' would be read as an option by StorageTool, so draw again.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """Single-node KRaft settings: everything replicated once, nothing created implicitly.

    auto.create.topics is off so a typo in a topic name fails like it does in production;
    the group settings keep the classic protocol (the streamer uses it with cooperative-sticky)
    and let tests use short session timeouts and join without the 3 s initial delay.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "5",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.coordinator.rebalance.protocols": "classic,consumer",
        "group.min.session.timeout.ms": "1000",
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def log4j_properties(log_file: Path) -> str:
    """Broker logs go to a file in the data dir; stdout stays quiet (JVM crashes only)."""
    return f"""status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


@dataclass
class BrokerState:
    """What another process needs to find, stop or restart the broker (state.json)."""

    port: int
    controller_port: int
    cluster_id: str
    version: str
    pid: int | None = None

    @classmethod
    def load(cls, path: Path) -> BrokerState | None:
        """Read state.json; None if there is none (never started here, or cleaned up)."""
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(**raw)

    def save(self, path: Path) -> None:
        """Write atomically so a concurrent `status` never reads half a file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Process helpers
# --------------------------------------------------------------------------------------------


def _pid_is_broker(pid: int, properties: Path) -> bool:
    """True if `pid` is alive and is *our* broker (guards against a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return b"kafka.Kafka" in cmdline and str(properties).encode() in cmdline


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the broker's whole process group (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


# --------------------------------------------------------------------------------------------
# Client-side helpers (also used by the fixtures and the demo)
# --------------------------------------------------------------------------------------------

_CLIENT_LOG = logging.getLogger(f"{__name__}.librdkafka")


def client_conf(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """librdkafka logs go to Python logging, so "connection refused" while starting stays quiet."""
    return {"bootstrap.servers": bootstrap, "logger": _CLIENT_LOG, **extra}


def check_reachable(bootstrap: str, timeout: float = 10.0) -> None:
    """Raise DevKafkaError unless broker metadata can be fetched within `timeout` seconds."""
    admin = AdminClient(client_conf(bootstrap))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise DevKafkaError(f"Kafka at {bootstrap} is not reachable: {exc}") from exc
    if not metadata.brokers:
        raise DevKafkaError(f"Kafka at {bootstrap} returned metadata without brokers")


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    config: Mapping[str, str] | None = None,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> None:
    """Create a topic and return once every partition has a leader.

    Why wait: CreateTopics returns before leaders are elected, and a producer or consumer that
    starts in that gap sees UNKNOWN_TOPIC_OR_PART and makes tests flaky.
    """
    admin = AdminClient(client_conf(bootstrap))
    topic = NewTopic(name, partitions, replication_factor, config=dict(config or {}))
    future = admin.create_topics([topic], operation_timeout=timeout)[name]
    try:
        future.result(timeout=timeout)
    except TimeoutError as exc:
        raise DevKafkaError(f"no answer creating topic {name!r} within {timeout}s") from exc
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise DevKafkaError(f"cannot create topic {name!r}: {exc}") from exc
    wait_for_topic(bootstrap, name, partitions, timeout)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Poll metadata until `name` has `partitions` partitions, each with a leader."""
    admin = AdminClient(client_conf(bootstrap))
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(KafkaException):
            topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
            if topic is not None and topic.error is None and _all_led(topic, partitions):
                return
        if time.monotonic() > deadline:
            raise DevKafkaError(f"topic {name!r} has no leader for all partitions after {timeout}s")
        time.sleep(0.1)


def _all_led(topic: Any, partitions: int) -> bool:
    parts = topic.partitions
    return len(parts) == partitions and all(
        p.leader >= 0 and p.error is None for p in parts.values()
    )


def probe_group_commit(bootstrap: str, timeout: float = 15.0) -> None:
    """Produce to the probe topic, consume it in a group and commit synchronously.

    This is the readiness test: metadata alone answers seconds before the group coordinator
    has loaded __consumer_offsets, and the streamer's first act is to join a group and commit.
    """
    create_topic(bootstrap, PROBE_TOPIC, timeout=timeout)
    producer = Producer(client_conf(bootstrap, acks="all", **{"message.timeout.ms": 10_000}))
    producer.produce(PROBE_TOPIC, value=b"probe")
    if producer.flush(timeout) != 0:
        raise DevKafkaError("probe message was not acknowledged")
    _wait_for_coordinator(bootstrap, PROBE_GROUP, timeout)
    consumer = Consumer(_probe_consumer_conf(bootstrap))
    try:
        consumer.subscribe([PROBE_TOPIC])
        message = _poll_one(consumer, timeout)
        consumer.commit(message=message, asynchronous=False)
    finally:
        consumer.close()


_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def _wait_for_coordinator(bootstrap: str, group: str, timeout: float) -> None:
    """Poll DescribeGroups every 0.1 s until the group's coordinator answers.

    Why: a consumer that meets NOT_COORDINATOR while __consumer_offsets is still loading backs
    off for about 2.7 s before rejoining; asking through the admin client first saves that on
    every start. Any other answer ends the wait; the consumer step then decides.
    """
    admin = AdminClient(client_conf(bootstrap))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        future = admin.describe_consumer_groups([group], request_timeout=5)[group]
        try:
            future.result()
            return
        except KafkaException as exc:
            if exc.args[0].code() not in _COORDINATOR_NOT_READY:
                return
        time.sleep(0.1)


def _probe_consumer_conf(bootstrap: str) -> dict[str, Any]:
    return client_conf(
        bootstrap,
        **{
            "group.id": PROBE_GROUP,
            "group.protocol": "classic",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        },
    )


def _poll_one(consumer: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error() is not None:
            raise DevKafkaError(f"probe consumer error: {message.error()}")
        return message
    raise DevKafkaError(f"probe consumer received nothing within {timeout}s")


# --------------------------------------------------------------------------------------------
# The broker
# --------------------------------------------------------------------------------------------


class DevKafka:
    """One single-node KRaft broker whose files all live in `data_dir`.

    The state file lets a second process (the CLI, a demo script) find, stop or restart a
    broker started by the first. Ports are kept across `stop(keep_data=True)` + `start()`, so
    clients configured with `bootstrap` reconnect after a restart.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        version: str = KAFKA_VERSION,
        jvm_opts: Sequence[str] = STARTUP_JVM_OPTS,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.version = version
        self.jvm_opts = tuple(jvm_opts)
        self._explicit_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._state = BrokerState.load(self.state_file)
        if self._state is not None and port is not None:
            self._state.port = port
        self._port: int | None = port if self._state is None else self._state.port

    # paths -----------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_file(self) -> Path:
        """The broker's log4j output: look here first when something is odd."""
        return self.data_dir / "logs" / "server.log"

    @property
    def _log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    # status ----------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:<port>`; raises if no port was chosen yet (never started, no --port)."""
        if self._port is None:
            raise DevKafkaError(f"no broker has been started in {self.data_dir}")
        return f"{HOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        """Pid (= process group id) of the running broker, or None."""
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        if self._state is None or self._state.pid is None:
            return None
        return self._state.pid if _pid_is_broker(self._state.pid, self.properties_file) else None

    def is_running(self) -> bool:
        """True if our broker process is alive (checked via /proc, not just the state file)."""
        return self.pid is not None

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the broker log and of its stdout/stderr, for error messages."""
        return (
            f"--- {self.log_file} ---\n{_tail(self.log_file, lines)}\n"
            f"--- {self.data_dir / 'broker.out'} ---\n{_tail(self.data_dir / 'broker.out', lines)}"
        )

    # lifecycle -------------------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Start the broker (formatting storage on first use) and return once groups work.

        Re-uses the data and ports of a previous `stop(keep_data=True)`. On a fresh data dir,
        if the broker dies because a just-picked free port was grabbed by someone else in the
        meantime, new ports are picked (3 tries); pinned ports (--port, restarts) never move.
        """
        if self.is_running():
            raise DevKafkaError(
                f"a broker is already running in {self.data_dir} ({self.bootstrap})"
            )
        libs = ensure_jars(self.version)
        pinned = self._explicit_port or self._formatted()
        for attempt in range(3):
            self._prepare(libs, new_ports=attempt > 0)
            self._spawn(libs)
            try:
                self._wait_ready(timeout)
                return self.bootstrap
            except _PortTaken:
                if pinned or attempt == 2:
                    busy = f"port {self.bootstrap} or the controller port is in use"
                    raise DevKafkaError(f"{busy}:\n{self.log_tail()}") from None
                log.info("port race lost on %s; retrying with new ports", self.bootstrap)
            except BaseException:  # Ctrl-C or a bug: never leave a half-started JVM behind
                self._kill_now()
                raise
        raise AssertionError("unreachable")

    def stop(self, keep_data: bool = False, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the broker's process group (a clean shutdown), SIGKILL after `timeout`.

        With keep_data the logs, offsets and ports survive for a later `start()`; otherwise the
        files this class created are removed (nothing else in data_dir is touched).
        """
        pid = self.pid
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                log.warning("broker %d ignored SIGTERM for %.0fs; killing it", pid, timeout)
                _signal_group(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
        self._process = None
        if self._state is not None:
            self._state.pid = None
        if keep_data:
            if self._state is not None:
                self._state.save(self.state_file)
            return
        self._remove_files()

    def restart(self, timeout: float = READY_TIMEOUT_S) -> str:
        """Clean stop and start on the same data and ports (tests of broker restarts)."""
        self.stop(keep_data=True)
        return self.start(timeout)

    # internals -------------------------------------------------------------------------------
    def _formatted(self) -> bool:
        return (self._log_dir / "meta.properties").exists()

    def _prepare(self, libs: Path, new_ports: bool) -> None:
        """Pick ports (new data dir or lost port race), write config files, format if new."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._state is None or not self._formatted():
            self._state = BrokerState(0, 0, new_cluster_id(), self.version)
            new_ports = True
        if new_ports:
            explicit = self._port if self._explicit_port else None
            self._state.port = explicit or free_port()
            self._state.controller_port = free_port()
            while self._state.controller_port == self._state.port:
                self._state.controller_port = free_port()
        self._port = self._state.port
        self.properties_file.write_text(
            server_properties(self._state.port, self._state.controller_port, self._log_dir)
        )
        self.log_file.parent.mkdir(exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(log4j_properties(self.log_file))
        if not self._formatted():
            self._format(libs, self._state.cluster_id)

    def _java_cmd(self, libs: Path, main: str, *args: str, tool: bool = False) -> list[str]:
        """The JVM command line; short-lived tools always use the startup-tuned options."""
        return [
            _java(),
            *(STARTUP_JVM_OPTS if tool else self.jvm_opts),
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, libs: Path, cluster_id: str) -> None:
        """`kafka-storage.sh format` without the script. With a static voter set no
        --standalone is needed (4.x refuses --standalone together with controller.quorum.voters).
        """
        cmd = self._java_cmd(
            libs, "kafka.tools.StorageTool", "format", "-t", cluster_id,
            "-c", str(self.properties_file), tool=True,
        )  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise DevKafkaError(f"storage format failed:\n{done.stdout}{done.stderr}")

    def _spawn(self, libs: Path) -> None:
        """Run kafka.Kafka detached in its own session so it outlives the CLI and is killable
        as a group; its stdout/stderr go to broker.out."""
        cmd = self._java_cmd(libs, "kafka.Kafka", str(self.properties_file))
        with (self.data_dir / "broker.out").open("ab") as out:
            self._process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        assert self._state is not None
        self._state.pid = self._process.pid
        self._state.save(self.state_file)
        log.info("broker pid %d starting on %s", self._process.pid, self.bootstrap)

    def _wait_ready(self, timeout: float) -> None:
        """Wait for the TCP port, then for a successful group commit; fail fast if the JVM dies."""
        deadline = time.monotonic() + timeout
        last_error = "port not open yet"
        while time.monotonic() < deadline:
            self._raise_if_exited()
            if _port_open(self._state_port()):
                try:
                    budget = max(1.0, min(15.0, deadline - time.monotonic()))
                    probe_group_commit(self.bootstrap, budget)
                    return
                except (DevKafkaError, KafkaException) as exc:
                    last_error = str(exc)
            time.sleep(0.2)
        self._kill_now()
        raise DevKafkaError(
            f"broker on {self.bootstrap} not ready after {timeout:.0f}s ({last_error})\n"
            f"{self.log_tail()}"
        )

    def _state_port(self) -> int:
        assert self._state is not None
        return self._state.port

    def _raise_if_exited(self) -> None:
        if self._process is None or self._process.poll() is None:
            return
        code, tail = self._process.returncode, self.log_tail()
        self._process = None
        if "Address already in use" in tail:
            raise _PortTaken
        raise DevKafkaError(f"broker exited with code {code} during start-up\n{tail}")

    def _kill_now(self) -> None:
        if self._process is not None:
            _signal_group(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        """Wait for exit; reap it if we are the parent (else poll /proc, as for a CLI stop)."""
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while _pid_is_broker(pid, self.properties_file):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _remove_files(self) -> None:
        for name in _OWNED:
            path = self.data_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.data_dir.rmdir()  # only if empty
        self._state = None
        if not self._explicit_port:
            self._port = None


class _PortTaken(Exception):
    """The broker died with 'Address already in use' (a freshly picked port was grabbed)."""


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m streamer.dev.devkafka", description="Local single-node Kafka (KRaft)."
    )
    parser.add_argument("command", choices=["start", "stop", "status", "ensure"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="data dir (./.devkafka)")
    parser.add_argument("--port", type=int, default=None, help="PLAINTEXT port (default: free)")
    parser.add_argument("--keep-data", action="store_true", help="stop: keep logs and offsets")
    parser.add_argument("--timeout", type=float, default=READY_TIMEOUT_S)
    parser.add_argument(
        "--throughput", action="store_true", help="full JIT (benchmarks) instead of fast start-up"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: prints the bootstrap address on stdout, progress on stderr."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="devkafka: %(message)s", stream=sys.stderr)
    logging.getLogger(_CLIENT_LOG.name).setLevel(logging.CRITICAL)
    jvm_opts = THROUGHPUT_JVM_OPTS if args.throughput else STARTUP_JVM_OPTS
    broker = DevKafka(args.dir, args.port, jvm_opts=jvm_opts)
    try:
        return _run(args.command, broker, args)
    except DevKafkaError as exc:
        print(f"devkafka: {exc}", file=sys.stderr)
        return 1


def _run(command: str, broker: DevKafka, args: argparse.Namespace) -> int:
    if command == "status":
        if broker.is_running():
            print(f"running {broker.bootstrap} pid {broker.pid}")
            return 0
        print("stopped")
        return 3  # LSB "program is not running", like systemctl status
    if command == "stop":
        broker.stop(keep_data=args.keep_data)
        return 0
    if command == "ensure" and broker.is_running():
        probe_group_commit(broker.bootstrap)
        print(broker.bootstrap)
        return 0
    print(broker.start(args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
