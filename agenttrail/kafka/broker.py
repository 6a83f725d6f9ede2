"""The bundled single-node Apache Kafka broker (KRaft), fetched from Maven Central, run as a child JVM.

`agenttrail up` and the test fixtures use :class:`LocalBroker`. Start-up waits are bounded and a
broker that cannot start gives one line naming the cause.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from agenttrail.config import Settings
from agenttrail.errors import BrokerError

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
KAFKA_VERSION_MARKER = "kafka_2.13-"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass(frozen=True, slots=True)
class BrokerState:
    pid: int
    port: int
    controller_port: int
    home: str
    started_at: float
    start_seconds: float

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def free_port() -> int:
    """A port that is free on 127.0.0.1 right now (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def default_libs_dir() -> Path:
    return REPO_ROOT / ".agenttrail" / "kafka" / "libs"


def ensure_jars(libs_dir: Path | None = None, pom: Path = POM) -> Path:
    """Fetch the broker's jars with Maven once; later calls find them and fetch nothing."""
    libs = libs_dir or default_libs_dir()
    marker = libs / ".complete"
    if marker.is_file() and any(p.name.startswith(KAFKA_VERSION_MARKER) for p in libs.iterdir()):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not installed: it is needed once to fetch the Kafka jars")
    libs.mkdir(parents=True, exist_ok=True)
    logger.info("fetching Kafka jars with Maven into %s", libs)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise BrokerError(f"Maven could not fetch the Kafka jars: {tail[0]}")
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return libs


def _cluster_id() -> str:
    """A Kafka cluster id (URL-safe base64 of a UUID). Like Kafka's own Uuid.randomUuid, never one
    starting with '-': the storage tool would read it as an option (seen: 1 start in 64 failed)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _is_our_java(pid: int, config: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(config).encode() in cmdline


class LocalBroker:
    """A single KRaft broker+controller on 127.0.0.1, owned through a PID file under `home`."""

    def __init__(self, home: Path, port: int | None = None, controller_port: int | None = None,
                 libs_dir: Path | None = None, partitions: int = 4, heap_mb: int = 768) -> None:
        self.home = Path(home).resolve()
        self.port = port
        self.controller_port = controller_port
        self.libs_dir = libs_dir
        self.partitions = partitions
        self.heap_mb = heap_mb
        self._proc: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def state_path(self) -> Path:
        return self.home / "broker.json"

    @property
    def log_path(self) -> Path:
        return self.home / "broker.log"

    @property
    def bootstrap(self) -> str:
        state = self.state()
        if state is None:
            raise BrokerError("the local broker is not running: run `agenttrail up`")
        return state.bootstrap

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> BrokerState | None:
        """The running broker's state, or None (a stale PID file is removed)."""
        try:
            data = json.loads(self.state_path.read_text())
            state = BrokerState(**data)
        except (OSError, ValueError, TypeError):
            return None
        if _is_our_java(state.pid, self.config_path):
            return state
        self.state_path.unlink(missing_ok=True)
        return None

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> BrokerState:
        running = self.state()
        if running is not None:
            return running
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java is not installed: the bundled Kafka broker needs Java 17 or newer")
        libs = ensure_jars(self.libs_dir)
        port, cport = self._ports()
        for p in (port, cport):
            if not port_is_free(p):
                raise BrokerError(f"cannot start Kafka: port {p} on 127.0.0.1 is already in use")
        self.home.mkdir(parents=True, exist_ok=True)
        data_dir = self.home / "data"
        self._write_config(port, cport, data_dir)
        classpath = f"{libs}/*"
        log4j = self.home / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=self.home / "server.log"))
        jvm = [java, "-Xms256m", f"-Xmx{self.heap_mb}m", "-XX:+UseG1GC",
               f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true", "-cp", classpath]
        started = time.monotonic()
        if not (data_dir / "meta.properties").is_file():
            fmt = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c",
                 str(self.config_path)],
                capture_output=True, text=True, timeout=120, check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"cannot format Kafka storage: {_last_line(fmt.stdout + fmt.stderr)}")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*jvm, "kafka.Kafka", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.home,
            )
        state = BrokerState(pid=self._proc.pid, port=port, controller_port=cport, home=str(self.home),
                            started_at=time.time(), start_seconds=0.0)
        try:
            self._wait_ready(state, timeout)
        except BaseException:
            self._kill(self._proc.pid)
            raise
        state = BrokerState(**{**asdict(state), "start_seconds": round(time.monotonic() - started, 2)})
        self.state_path.write_text(json.dumps(asdict(state)))
        logger.info("Kafka broker ready on %s in %.1fs", state.bootstrap, state.start_seconds)
        return state

    def _ports(self) -> tuple[int, int]:
        """Explicit ports, else the ones this home used before (a stable address), else free ones."""
        if self.port and self.controller_port:
            return self.port, self.controller_port
        remembered = self.home / "ports.json"
        try:
            data = json.loads(remembered.read_text())
            port, cport = int(data["port"]), int(data["controller_port"])
            if port_is_free(port) and port_is_free(cport):
                return self.port or port, self.controller_port or cport
        except (OSError, ValueError, KeyError, TypeError):
            pass
        port, cport = self.port or free_port(), self.controller_port or free_port()
        self.home.mkdir(parents=True, exist_ok=True)
        remembered.write_text(json.dumps({"port": port, "controller_port": cport}))
        return port, cport

    def _write_config(self, port: int, cport: int, data_dir: Path) -> None:
        # On a restart the node keeps its storage; ports are rewritten, the quorum is this one node.
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data_dir),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
            "message.max.bytes": str(1024 * 1024 + 65536),
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _wait_ready(self, state: BrokerState, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": state.bootstrap, "socket.timeout.ms": 2000,
                             "log_level": 0, "logger": logging.getLogger("agenttrail.kafka.probe")})
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BrokerError(f"Kafka exited during start-up: {self._failure_cause()}")
            try:
                md = admin.list_topics(timeout=2)
                if md.brokers:
                    return
            except Exception:  # the broker is not answering yet
                pass
            time.sleep(0.3)
        raise BrokerError(f"Kafka did not answer within {timeout:.0f}s: {self._failure_cause()}")

    def _failure_cause(self) -> str:
        lines: list[str] = []
        for path in (self.log_path, self.home / "server.log"):
            if path.is_file():
                lines += path.read_text(errors="replace").splitlines()[-200:]
        for needle in ("Address already in use", "UnsupportedClassVersionError", "OutOfMemoryError",
                       "Exception", "ERROR"):
            for line in reversed(lines):
                if needle in line:
                    return line.strip()[:300]
        return f"see {self.log_path}"

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker by its PID. Returns False when nothing was running."""
        state = self.state()
        pid = state.pid if state else (self._proc.pid if self._proc and self._proc.poll() is None else None)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self._proc):
            time.sleep(0.2)
        if _alive(pid, self._proc):
            self._kill(pid)
        self.state_path.unlink(missing_ok=True)
        return True

    def _kill(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None and proc.pid == pid:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of someone else's child still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


@contextmanager
def temporary_broker(prefix: str = "agenttrail-kafka-", partitions: int = 4) -> Iterator[LocalBroker]:
    """A broker in a fresh temporary directory on free ports; stopped and removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    broker = LocalBroker(home, partitions=partitions)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


def local_broker(settings: Settings) -> LocalBroker:
    return LocalBroker(settings.broker_dir, partitions=settings.partitions)


def resolve_bootstrap(settings: Settings) -> str:
    """The cluster to talk to: AGENTTRAIL_KAFKA_BOOTSTRAP, else the running local broker."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    state = local_broker(settings).state()
    if state is None:
        raise BrokerError("no Kafka broker: run `agenttrail up` or set AGENTTRAIL_KAFKA_BOOTSTRAP")
    return state.bootstrap
