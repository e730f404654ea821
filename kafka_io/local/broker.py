"""The local single-node Kafka broker that tests, the demo and developers run.

No Docker engine is assumed (docs/ARCHITECTURE.md, "The local broker"), so streamrec
starts Apache Kafka itself from the official Maven Central jars that `deploy/setup.sh` fetches into
`.cache/kafka/libs`, with the machine's Java 17: one KRaft process that is both
broker and controller. `LocalBroker` renders `deploy/kafka/server.properties.template`
(from a `BrokerConfig`, `config.py`) into a data directory, formats the storage once,
starts `kafka.Kafka` detached in its own session and waits until it answers a real
Kafka request (`probes.py`). Stopping only ever signals the pid it recorded, and only
while that pid is still this broker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import TracebackType

from kafka.errors import KafkaError

from streamrec.kafka_io.errors import BrokerError
from streamrec.kafka_io.local.config import (
    LOG4J_NAME,
    NODE_ID,
    TEMPLATE_NAME,
    BrokerConfig,
    extra_properties_text,
    sasl_listener_settings,
    scram_arguments,
    ssl_listener_settings,
)
from streamrec.kafka_io.local.probes import (
    broker_answers,
    find_java,
    port_accepts,
    port_is_free,
    process_args,
)

logger = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
TOOL_TIMEOUT_S = 180.0  # a JVM tool on a busy 2-core laptop can take a while


@dataclass(frozen=True)
class BrokerStatus:
    """What `status()` found: a running broker has the pid it was started with."""

    running: bool
    pid: int | None
    bootstrap: str


class LocalBroker:
    """Start, stop and query one local KRaft broker rooted in `config.data_dir`.

    `with LocalBroker(cfg) as bootstrap:` starts it (or reuses the one already
    running from the same data dir) and stops it on exit if it was started here.
    """

    def __init__(self, config: BrokerConfig | None = None) -> None:
        self.config = config or BrokerConfig()
        self._process: subprocess.Popen[bytes] | None = None
        self._started_here = False

    # -- files in the data dir ------------------------------------------------

    @property
    def properties_path(self) -> Path:
        return self.config.data_dir / "server.properties"

    @property
    def pid_path(self) -> Path:
        return self.config.data_dir / "broker.pid"

    @property
    def log_path(self) -> Path:
        """The broker's own log (log4j2, WARN and above)."""
        return self.config.data_dir / "logs" / "server.log"

    @property
    def out_path(self) -> Path:
        """The JVM's stdout and stderr (crashes before logging is up land here)."""
        return self.config.data_dir / "broker.out"

    @property
    def log_dirs(self) -> Path:
        """Kafka's `log.dirs`: the partitions and the KRaft metadata log."""
        return self.config.data_dir / "kraft-combined-logs"

    # -- public API -------------------------------------------------------------

    def start(self, timeout_s: float = 90.0) -> str:
        """Start the broker (or find it running) and return its bootstrap address.

        Raises BrokerError when Java or the jars are missing, a port is taken by
        something else, or the broker exits or stays silent for `timeout_s`.
        """
        pid = self._running_pid()
        if pid is not None:
            running = self._rendered_bootstrap()
            if running != self.config.bootstrap:
                raise BrokerError(
                    f"a broker from {self.config.data_dir} already runs at {running} (pid {pid}); "
                    "stop it first (`streamrec broker stop`) or use another --data-dir")
            logger.info("broker already running at %s (pid %d)", running, pid)
            self._wait_ready(time.monotonic() + timeout_s, pid)
            return running
        java = self._preflight()
        began = time.monotonic()
        self._render()
        self._format_storage(java)
        pid = self._launch(java)
        self._started_here = True
        try:
            self._wait_ready(began + timeout_s, pid)
        except BaseException:
            self.stop()  # never leave a half-started broker behind
            raise
        logger.info("broker ready at %s in %.1fs (pid %d, data %s)",
                    self.config.bootstrap, time.monotonic() - began, pid, self.config.data_dir)
        return self.config.bootstrap

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM the recorded broker, SIGKILL it after `timeout_s`; False if none ran."""
        pid = self._running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        logger.info("stopping broker pid %d", pid)
        self._signal(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout_s):
            logger.warning("broker pid %d still running after %.0fs; killing it", pid, timeout_s)
            self._signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise BrokerError(f"broker pid {pid} survived SIGKILL; check `ps -p {pid}`")
        self.pid_path.unlink(missing_ok=True)
        self._process = None
        self._started_here = False
        return True

    def status(self) -> BrokerStatus:
        """Whether the broker recorded in the data dir runs, and where it listens."""
        pid = self._running_pid()
        return BrokerStatus(running=pid is not None, pid=pid, bootstrap=self._rendered_bootstrap())

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()

    # -- start steps ------------------------------------------------------------

    def _preflight(self) -> str:
        """The java executable, once everything needed to start is in place."""
        cfg = self.config
        java = find_java()
        if java is None:
            raise BrokerError(
                "java not found (PATH or JAVA_HOME): install Java 17, e.g. "
                "`apt-get install openjdk-17-jre-headless`, or run deploy/setup.sh")
        if not any(cfg.libs_dir.glob("*.jar")):
            raise BrokerError(
                f"no Kafka jars in {cfg.libs_dir}: run deploy/setup.sh "
                "(it fetches them from Maven Central with deploy/kafka/pom.xml)")
        for name in (TEMPLATE_NAME, LOG4J_NAME):
            if not (cfg.templates_dir / name).is_file():
                raise BrokerError(
                    f"{name} not found in {cfg.templates_dir}: run from a streamrec checkout "
                    "(the broker templates live in deploy/kafka)")
        if cfg.ssl_keystore is not None and not cfg.ssl_keystore.is_file():
            raise BrokerError(f"the SSL listener's keystore {cfg.ssl_keystore} does not exist")
        ports = [(cfg.port, "--port"), (cfg.controller_port, "--controller-port")]
        ports += [(port, name) for name, port in cfg.extra_ports.items()]
        for port, flag in ports:
            if not port_is_free(cfg.host, port):
                raise BrokerError(
                    f"{cfg.host}:{port} is already in use by another process; "
                    f"stop it or pick another {flag}")
        return java

    def _render(self) -> None:
        cfg = self.config
        template = Template((cfg.templates_dir / TEMPLATE_NAME).read_text())
        text = template.substitute(
            host=cfg.host, port=cfg.port, controller_port=cfg.controller_port,
            log_dirs=self.log_dirs, **ssl_listener_settings(cfg), **sasl_listener_settings(cfg),
            extra_properties=extra_properties_text(cfg))
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(text)

    def _java_command(self, java: str, main_class: str, *args: str) -> list[str]:
        cfg = self.config
        return [
            java, *cfg.jvm_options,
            f"-Dlog4j2.configurationFile={cfg.templates_dir / LOG4J_NAME}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp", f"{cfg.libs_dir}/*",  # java expands the wildcard itself
            main_class, *args,
        ]

    def _run_tool(self, java: str, *args: str) -> str:
        cmd = self._java_command(java, STORAGE_TOOL, *args)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"StorageTool {args[0]} took over {TOOL_TIMEOUT_S:.0f}s") from exc
        if done.returncode != 0:
            raise BrokerError(
                f"StorageTool {args[0]} failed (exit {done.returncode}):\n"
                f"{done.stdout.strip()}\n{done.stderr.strip()}")
        return done.stdout.strip()

    def _format_storage(self, java: str) -> None:
        """Format the KRaft storage once; a formatted data dir keeps its cluster id."""
        if (self.log_dirs / "meta.properties").is_file():
            return
        began = time.monotonic()
        cluster_id = self._run_tool(java, "random-uuid").splitlines()[-1].strip()
        self._run_tool(java, "format", "-t", cluster_id, "-c", str(self.properties_path),
                       "--standalone", "-g", *scram_arguments(self.config))
        logger.info("formatted %s (cluster %s) in %.1fs", self.log_dirs, cluster_id,
                    time.monotonic() - began)

    def _launch(self, java: str) -> int:
        cmd = self._java_command(java, MAIN_CLASS, str(self.properties_path))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.debug("starting %s", " ".join(cmd))
        with self.out_path.open("ab") as out:
            # Own session: Ctrl-C in the starting shell does not reach the broker.
            self._process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.config.data_dir, start_new_session=True)
        self.pid_path.write_text(f"{self._process.pid}\n")
        return self._process.pid

    def _wait_ready(self, deadline: float, pid: int) -> None:
        """Return once the broker answers (`_not_ready`), or raise BrokerError when it
        exits or stays silent past `deadline`."""
        host, port = self.config.host, self.config.port
        who = self._name()
        last_error = "nothing listening yet"
        while True:
            if not self._is_broker(pid):
                raise BrokerError(
                    f"{who} (pid {pid}) exited before answering at {host}:{port}"
                    f"{self._exit_code()}.\n{self._log_tail()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"{who} (pid {pid}) did not answer at {host}:{port} in time "
                    f"({last_error}).\n{self._log_tail()}")
            if port_accepts(host, port):
                try:
                    problem = self._not_ready(f"{host}:{port}", min(remaining, 10.0))
                    if problem is None:
                        return
                    last_error = problem
                except KafkaError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.25)

    def _name(self) -> str:
        """How errors name this process."""
        return "the broker"

    def _not_ready(self, bootstrap: str, timeout_s: float) -> str | None:
        """None once the broker answers a metadata request listing itself, else why not."""
        if broker_answers(bootstrap, timeout_s):
            return None
        return f"metadata does not list node {NODE_ID} yet"

    # -- process bookkeeping ----------------------------------------------------

    def _running_pid(self) -> int | None:
        """The recorded pid if it is still this data dir's broker, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if self._is_broker(pid) else None

    def _is_broker(self, pid: int) -> bool:
        """True while `pid` is a live kafka.Kafka running this data dir's config."""
        if self._process is not None and self._process.pid == pid:
            # Our own child: poll() also reaps it. Its cmdline can briefly still be
            # the launcher's right after the fork, so trust poll() over /proc here.
            return self._process.poll() is None
        args = process_args(pid)
        return MAIN_CLASS in args and str(self.properties_path) in args

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._is_broker(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    @staticmethod
    def _signal(pid: int, sig: signal.Signals) -> None:
        # It may have exited between the check and the signal: what we wanted anyway.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _exit_code(self) -> str:
        if self._process is not None and self._process.returncode is not None:
            return f" with code {self._process.returncode}"
        return ""

    def _rendered_bootstrap(self) -> str:
        """The PLAINTEXT address in the rendered config, else the configured one."""
        try:
            lines = self.properties_path.read_text().splitlines()
        except FileNotFoundError:
            return self.config.bootstrap
        for line in lines:
            if line.startswith("listeners="):
                for listener in line.removeprefix("listeners=").split(","):
                    if listener.startswith("PLAINTEXT://"):
                        return listener.removeprefix("PLAINTEXT://")
        return self.config.bootstrap

    def _log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.out_path, self.log_path):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
            if tail:
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no broker output in {self.config.data_dir})"

