"""A local 3-node Kafka cluster, for testing that state survives the loss of a broker.

The single `LocalBroker` holds one copy of everything, so it cannot show what
replication buys. `LocalCluster` starts N (at least 3) KRaft nodes from the same
Maven jars, each a combined broker + controller in its own process, with its own
client port, controller port and data dir (`<data-dir>/node-<n>`). The nodes form a
static quorum (`controller.quorum.voters`), are formatted with one shared cluster id,
and carry the replication settings of a production cluster of three: every topic
gets 3 replicas by default and `min.insync.replicas=2`
(`deploy/kafka/cluster-node.properties.template`; the settings and `ClusterConfig`
live in `config.py`).

Each node is a `ClusterNode`, a `LocalBroker` with its own rendering, formatting and
readiness check, so starting, stopping (by recorded pid, only while that pid is
still the node's `kafka.Kafka`) and the error reports are the single broker's.
Starting launches every JVM before waiting on any: a node's broker is ready only
once a majority of the controllers runs. `kill_node` and `start_node` SIGKILL one
node and bring it back, for the failover tests.

Ports: `ClusterConfig.consecutive(3, port=9092)` gives clients 9092, 9093, 9094 and
controllers 9095, 9096, 9097 (the controllers follow the clients unless given).
"""

from __future__ import annotations

import base64
import logging
import re
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import TracebackType

from streamrec.common.errors import ConfigError
from streamrec.kafka_io.errors import BrokerError
from streamrec.kafka_io.local.broker import BrokerStatus, LocalBroker
from streamrec.kafka_io.local.config import (
    CLUSTER_TEMPLATE_NAME,
    MIN_INSYNC_REPLICAS,
    OFFSETS_PARTITIONS,
    REPLICATION_FACTOR,
    ClusterConfig,
)
from streamrec.kafka_io.local.probes import node_answers

logger = logging.getLogger(__name__)

CLUSTER_ID_FILE = "cluster.id"
NODE_DIR = re.compile(r"^node-(\d+)$")


@dataclass(frozen=True)
class ClusterStatus:
    """What `LocalCluster.status()` found, node by node (node 1 first)."""

    nodes: tuple[BrokerStatus, ...]

    @property
    def running(self) -> bool:
        """True when every node runs."""
        return all(n.running for n in self.nodes)

    @property
    def bootstrap(self) -> str:
        """The nodes' client addresses, comma-separated."""
        return ",".join(n.bootstrap for n in self.nodes)


def nodes_in(data_dir: Path) -> int:
    """How many cluster nodes were rendered under `data_dir` (0: no cluster there).

    `broker stop` and `status` find a cluster by its data dir this way.
    """
    try:
        entries = list(Path(data_dir).expanduser().iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return sum(1 for p in entries
               if NODE_DIR.match(p.name) and (p / "server.properties").is_file())


def new_cluster_id() -> str:
    """A random cluster id as `kafka-storage random-uuid` prints it (no JVM needed).

    Kafka's `Uuid` is 16 random bytes in URL-safe base64 without padding, and never
    one whose text starts with '-' (it would read as a command-line option).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class ClusterNode(LocalBroker):
    """One node of a `LocalCluster`: a `LocalBroker` in `<data-dir>/node-<n>` that renders
    the cluster template, formats with the cluster's id and waits for the whole cluster."""

    def __init__(self, cluster: ClusterConfig, node_id: int, cluster_id: str) -> None:
        super().__init__(cluster.node_config(node_id))
        self.cluster = cluster
        self.node_id = node_id
        self.cluster_id = cluster_id

    def prepare(self) -> str:
        """Check, render and format this node; returns the java to launch it with."""
        java = self._preflight()
        self.render()
        return java

    def render(self) -> Path:
        """Write the node's `server.properties` from the cluster template; returns its path."""
        template = self.cluster.templates_dir / CLUSTER_TEMPLATE_NAME
        if not template.is_file():
            raise BrokerError(f"{CLUSTER_TEMPLATE_NAME} not found in {template.parent}: run "
                              "from a streamrec checkout (the templates live in deploy/kafka)")
        self._render()
        return self.properties_path

    def format_storage(self, java: str) -> None:
        """Format the node's storage (a no-op once formatted)."""
        self._format_storage(java)

    def launch(self, java: str) -> int:
        """Start the node's JVM without waiting for it; returns its pid."""
        pid = self._launch(java)
        self._started_here = True
        return pid

    def wait_ready(self, deadline: float) -> None:
        """Until the node answers and the cluster lists every node (see `_wait_ready`)."""
        pid = self.pid()
        if pid is None:
            raise BrokerError(f"node {self.node_id} is not running.\n{self._log_tail()}")
        self._wait_ready(deadline, pid)

    def pid(self) -> int | None:
        """The node's pid while it runs, else None."""
        return self._running_pid()

    def kill(self, timeout_s: float = 10.0) -> int:
        """SIGKILL the node (a crash: no controlled shutdown); returns the pid killed."""
        pid = self._running_pid()
        if pid is None:
            raise BrokerError(f"node {self.node_id} is not running; nothing to kill")
        logger.info("SIGKILL node %d (pid %d)", self.node_id, pid)
        self._signal(pid, signal.SIGKILL)
        if not self._wait_exit(pid, timeout_s):
            raise BrokerError(f"node {self.node_id} (pid {pid}) survived SIGKILL")
        self.pid_path.unlink(missing_ok=True)
        self._process = None
        return pid

    def terminate(self) -> int | None:
        """SIGTERM the node without waiting; returns the pid signalled (None: not running)."""
        pid = self._running_pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
        return pid

    def finish_stop(self, pid: int, timeout_s: float) -> None:
        """After `terminate()`: wait up to `timeout_s` for `pid` to exit, else SIGKILL it."""
        if not self._wait_exit(pid, timeout_s):
            logger.warning("node %d (pid %d) still running after %.0fs; killing it",
                           self.node_id, pid, timeout_s)
            self._signal(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise BrokerError(f"node {self.node_id} (pid {pid}) survived SIGKILL; "
                                  f"check `ps -p {pid}`")
        self.pid_path.unlink(missing_ok=True)
        self._process = None
        self._started_here = False

    # -- LocalBroker's start steps, for a node of the cluster ---------------------

    def _render(self) -> None:
        cfg, cluster = self.config, self.cluster
        template = Template((cluster.templates_dir / CLUSTER_TEMPLATE_NAME).read_text())
        text = template.substitute(
            node_id=self.node_id, voters=cluster.voters, host=cfg.host, port=cfg.port,
            controller_port=cfg.controller_port, log_dirs=self.log_dirs,
            replication_factor=REPLICATION_FACTOR, min_insync_replicas=MIN_INSYNC_REPLICAS,
            offsets_partitions=OFFSETS_PARTITIONS)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_path.write_text(text)

    def _format_storage(self, java: str) -> None:
        """Format with the cluster's shared id and no --standalone: the static quorum
        in `controller.quorum.voters` is the voter set."""
        if (self.log_dirs / "meta.properties").is_file():
            return
        began = time.monotonic()
        self._run_tool(java, "format", "-t", self.cluster_id, "-c", str(self.properties_path),
                       "-g")
        logger.info("formatted node %d in %.1fs (cluster %s)", self.node_id,
                    time.monotonic() - began, self.cluster_id)

    def _name(self) -> str:
        return f"node {self.node_id}"

    def _not_ready(self, bootstrap: str, timeout_s: float) -> str | None:
        """None once this node answers and the cluster lists all its brokers as live."""
        if node_answers(bootstrap, self.node_id, self.cluster.nodes, timeout_s):
            return None
        return (f"the cluster does not list node {self.node_id} and all "
                f"{self.cluster.nodes} brokers yet")


class LocalCluster:
    """Start, stop and query a local KRaft cluster rooted in `config.data_dir`.

    `with LocalCluster(cfg) as bootstrap:` starts it (or the nodes that do not run)
    and stops it on exit if it started any node.
    """

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config or ClusterConfig()
        cluster_id = self._cluster_id()
        self.nodes = {n: ClusterNode(self.config, n, cluster_id) for n in self.config.node_ids}
        self._started_here = False

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated."""
        return self.config.bootstrap

    def node(self, node_id: int) -> ClusterNode:
        """Node `node_id` (1-based)."""
        try:
            return self.nodes[node_id]
        except KeyError:
            raise ConfigError(f"no node {node_id} in a cluster of {self.config.nodes}") from None

    # -- public API -------------------------------------------------------------

    def start(self, timeout_s: float = 180.0) -> str:
        """Start every node that does not run, then wait for all; returns the bootstrap.

        Every JVM is launched before any is waited on: no broker is ready until a
        majority of the controllers runs. On failure every node started here stops.
        """
        began = time.monotonic()
        to_start = []
        for node in self.nodes.values():
            if node.pid() is None:
                to_start.append(node)
                continue
            running = node.status().bootstrap
            if running != node.config.bootstrap:
                raise BrokerError(
                    f"node {node.node_id} from {node.config.data_dir} already runs at {running}; "
                    "stop the cluster first (`streamrec broker stop`) or use another --data-dir")
        if to_start:
            javas = [node.prepare() for node in to_start]
            self._write_cluster_id()
            # Formatting runs a JVM per node: side by side, they take one's time.
            with ThreadPoolExecutor(len(to_start)) as pool:
                list(pool.map(lambda pair: pair[0].format_storage(pair[1]),
                              zip(to_start, javas, strict=True)))
            for node, java in zip(to_start, javas, strict=True):
                pid = node.launch(java)
                logger.info("launched node %d (pid %d) at %s", node.node_id, pid,
                            node.config.bootstrap)
            self._started_here = True
        try:
            for node in self.nodes.values():
                node.wait_ready(began + timeout_s)
                logger.info("node %d ready at %s (%.1fs)", node.node_id, node.config.bootstrap,
                            time.monotonic() - began)
        except BaseException:
            if to_start:
                self._stop_nodes(to_start, 30.0)  # never leave a half-started cluster
            raise
        logger.info("cluster of %d ready at %s in %.1fs (data %s)", self.config.nodes,
                    self.bootstrap, time.monotonic() - began, self.config.data_dir)
        return self.bootstrap

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM every node at once, SIGKILL those left after `timeout_s`; False if none ran.

        All at once: stopped one by one, the last nodes lose their quorum and wait on
        a controlled shutdown that can no longer be granted.
        """
        stopped = self._stop_nodes(list(self.nodes.values()), timeout_s)
        self._started_here = False
        return stopped

    def status(self) -> ClusterStatus:
        """Each node's running/pid/bootstrap, from its data dir."""
        return ClusterStatus(tuple(node.status() for node in self.nodes.values()))

    def kill_node(self, node_id: int) -> int:
        """SIGKILL node `node_id` (a crash, no controlled shutdown); returns its pid."""
        return self.node(node_id).kill()

    def start_node(self, node_id: int, timeout_s: float = 120.0) -> None:
        """Start node `node_id` again (the others running) and wait until the cluster
        lists it as a live broker."""
        node = self.node(node_id)
        began = time.monotonic()
        node.start(timeout_s=timeout_s)
        logger.info("node %d back at %s in %.1fs", node_id, node.config.bootstrap,
                    time.monotonic() - began)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._started_here:
            self.stop()

    # -- helpers ----------------------------------------------------------------

    def _stop_nodes(self, nodes: list[ClusterNode], timeout_s: float) -> bool:
        signalled = [(node, pid) for node in nodes if (pid := node.terminate()) is not None]
        for node in nodes:
            if node.pid() is None:
                node.pid_path.unlink(missing_ok=True)
        if not signalled:
            return False
        logger.info("stopping nodes %s", [node.node_id for node, _ in signalled])
        deadline = time.monotonic() + timeout_s
        for node, pid in signalled:
            node.finish_stop(pid, max(deadline - time.monotonic(), 0.0))
        return True

    @property
    def _cluster_id_path(self) -> Path:
        return self.config.data_dir / CLUSTER_ID_FILE

    def _cluster_id(self) -> str:
        """The id the nodes were formatted with: recorded, else read from a formatted
        node, else new (written when the cluster is first started)."""
        try:
            return self._cluster_id_path.read_text().strip()
        except FileNotFoundError:
            pass
        for node_id in self.config.node_ids:
            meta = self.config.node_dir(node_id) / "kraft-combined-logs" / "meta.properties"
            try:
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.removeprefix("cluster.id=").strip()
            except FileNotFoundError:
                continue
        return new_cluster_id()

    def _write_cluster_id(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = next(iter(self.nodes.values())).cluster_id
        self._cluster_id_path.write_text(f"{cluster_id}\n")
