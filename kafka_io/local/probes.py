"""What the machine and a broker answer: Java, free ports, a pid's command line.

The local broker and cluster ask these before starting (is Java there, is a port
free), while waiting (does the port accept, does the metadata list the node) and
before signalling (is that pid still our `kafka.Kafka`). Each is one small
question with no state; the benchmarks use `port_accepts` too.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import subprocess
from pathlib import Path

from kafka import KafkaAdminClient

from streamrec.kafka_io.errors import BrokerError
from streamrec.kafka_io.local.config import NODE_ID

logger = logging.getLogger(__name__)


def find_java() -> str | None:
    """`$JAVA_HOME/bin/java` when set, else `java` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as the broker will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise BrokerError(f"cannot bind {host}:{port}: {exc}") from exc
    return True


def port_accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port (a quiet first probe)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout_s: float) -> bool:
    """Whether the broker at `bootstrap` answers a metadata request listing itself."""
    timeout_ms = max(int(timeout_s * 1000), 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="streamrec-broker-probe",
        bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    return any(b.get("broker_id") == NODE_ID for b in cluster.get("brokers", []))


def process_args(pid: int) -> list[str]:
    """The command line of `pid` ([] when gone or a zombie); /proc, else `ps`."""
    proc = Path("/proc") / str(pid) / "cmdline"
    if Path("/proc/self").exists():
        try:
            return [a for a in proc.read_bytes().decode(errors="replace").split("\0") if a]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return []
    done = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True,
                          text=True, check=False)
    return done.stdout.split()


def node_answers(bootstrap: str, node_id: int, nodes: int, timeout_s: float) -> bool:
    """Whether the cluster reached through `bootstrap` lists `node_id` and all `nodes`
    brokers as live (a fenced broker is not listed)."""
    timeout_ms = max(int(timeout_s * 1000), 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="streamrec-cluster-probe",
        bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    ids = {b.get("broker_id") for b in cluster.get("brokers", [])}
    return node_id in ids and len(ids) >= nodes
