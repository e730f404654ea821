"""`streamrec broker {start,stop,status}`: the local Kafka broker, or a local cluster.

For development and the demo (see `streamrec.kafka_io.local.broker`); with `--nodes 3`
a 3-node KRaft cluster with replication factor 3 and min.insync.replicas 2, to see
state survive the loss of a broker (`streamrec.kafka_io.local.cluster`). The flags are
short because they sit under `broker`; their environment variables carry the
`BROKER_` prefix so they cannot be mistaken for the worker's settings:

    --host             STREAMREC_BROKER_HOST             (127.0.0.1)
    --port             STREAMREC_BROKER_PORT             (9092, the bootstrap port)
    --controller-port  STREAMREC_BROKER_CONTROLLER_PORT  (9093; a cluster: --port + nodes)
    --nodes            STREAMREC_BROKER_NODES            (start: 1; stop/status: found)
    --data-dir         STREAMREC_BROKER_DATA_DIR         (<checkout>/.cache/kafka/data)
    --libs-dir         STREAMREC_BROKER_LIBS_DIR         (<checkout>/.cache/kafka/libs)
    --timeout          STREAMREC_BROKER_TIMEOUT          (start: 90 s, stop: 30 s)

Ports of a cluster of N: node n (1..N) takes client port `--port + n - 1` and
controller port `--controller-port + n - 1`, the controllers by default right after
the clients: `--nodes 3` listens on 9092-9094 and 9095-9097, and `start` prints the
bootstrap list `127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094`. Each node lives in
`<data-dir>/node-<n>`; `stop` and `status` without `--nodes` act on the cluster when
the data dir holds one, else on the single broker.

`status` exits 0 when the broker (every node) runs and 3 when not (like `systemctl status`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamrec.cli.flags import env_flag
from streamrec.common.errors import ConfigError
from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.cluster import LocalCluster, nodes_in
from streamrec.kafka_io.local.config import BrokerConfig, ClusterConfig

EXIT_NOT_RUNNING = 3


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec broker` and its three actions."""
    parser = sub.add_parser(
        "broker", help="start, stop or query the local Kafka broker (or a local cluster)",
        description="A local single-node KRaft Kafka broker (or, with --nodes 3, a local "
                    "3-node cluster) from the Maven jars that deploy/setup.sh fetches; for "
                    "development, the demo and the tests.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text, timeout in (
        ("start", start, "start the broker (no-op if it runs) and print its bootstrap", 90.0),
        ("stop", stop, "stop the broker started from --data-dir", 30.0),
        ("status", status, "print running/pid/bootstrap; exit 0 if running, 3 if not", None),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_broker_flags(action)
        if name == "start":
            env_flag(action, "--nodes", 1, "nodes to start: 1 (a single broker) or a cluster "
                     "of 3 or more (replication factor 3, min.insync.replicas 2)", int,
                     env="--broker-nodes")
        else:
            env_flag(action, "--nodes", None, "1: the single broker; 3 or more: the cluster "
                     "(default: the cluster if --data-dir holds one)", int,
                     env="--broker-nodes")
        if timeout is not None:
            env_flag(action, "--timeout", timeout, "seconds to wait for the broker", float,
                     env="--broker-timeout")
        action.set_defaults(handler=handler)


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that locate a broker: address, ports, data and jar directories."""
    defaults = BrokerConfig()
    env_flag(parser, "--host", defaults.host, "address the listeners bind and advertise",
             env="--broker-host")
    env_flag(parser, "--port", defaults.port, "client (bootstrap) port", int,
             env="--broker-port")
    env_flag(parser, "--controller-port", None,
             f"KRaft controller port (unset: {defaults.controller_port}; with --nodes N the "
             "first of N controller ports, unset: --port + N)", int,
             env="--broker-controller-port")
    env_flag(parser, "--data-dir", defaults.data_dir,
             "config, logs, pidfile and partitions of the broker", Path, env="--broker-data-dir")
    env_flag(parser, "--libs-dir", defaults.libs_dir,
             "the Kafka jars (deploy/setup.sh fetches them)", Path, env="--broker-libs-dir")


def nodes_from_args(args: argparse.Namespace) -> int:
    """`--nodes`, or (stop/status without it) the cluster's size if the data dir holds one."""
    nodes = args.nodes if args.nodes is not None else nodes_in(args.data_dir) or 1
    if nodes < 1:
        raise ConfigError(f"--nodes must be 1 or at least 3, got {nodes}")
    return nodes


def broker_from_args(args: argparse.Namespace) -> LocalBroker:
    """The single broker the parsed flags describe."""
    controller_port = args.controller_port
    if controller_port is None:
        controller_port = BrokerConfig.controller_port  # the dataclass default, 9093
    return LocalBroker(BrokerConfig(
        host=args.host, port=args.port, controller_port=controller_port,
        data_dir=args.data_dir, libs_dir=args.libs_dir))


def cluster_from_args(args: argparse.Namespace, nodes: int) -> LocalCluster:
    """The cluster of `nodes` the parsed flags describe (consecutive ports, see above)."""
    return LocalCluster(ClusterConfig.consecutive(
        nodes, port=args.port, controller_port=args.controller_port, host=args.host,
        data_dir=args.data_dir, libs_dir=args.libs_dir))


def start(args: argparse.Namespace) -> int:
    """Start the broker (or every node) and print the bootstrap address(es) on stdout."""
    nodes = nodes_from_args(args)
    target = broker_from_args(args) if nodes == 1 else cluster_from_args(args, nodes)
    print(target.start(timeout_s=args.timeout))
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the broker (or cluster) recorded in the data dir; not running is no error."""
    nodes = nodes_from_args(args)
    target = broker_from_args(args) if nodes == 1 else cluster_from_args(args, nodes)
    what = "broker" if nodes == 1 else f"cluster of {nodes}"
    bootstrap = target.status().bootstrap
    if target.stop(timeout_s=args.timeout):
        print(f"stopped the {what} at {bootstrap}")
    else:
        print(f"no {what} running from {target.config.data_dir}")
    return 0


def status(args: argparse.Namespace) -> int:
    """Print running/pid/bootstrap; exit 0 when running (every node), 3 when not."""
    nodes = nodes_from_args(args)
    if nodes == 1:
        state = broker_from_args(args).status()
        print(f"running: {'yes' if state.running else 'no'}")
        print(f"pid: {state.pid if state.pid is not None else '-'}")
        print(f"bootstrap: {state.bootstrap}")
        return 0 if state.running else EXIT_NOT_RUNNING
    cluster = cluster_from_args(args, nodes).status()
    up = sum(n.running for n in cluster.nodes)
    print(f"running: {'yes' if cluster.running else 'no'} ({up} of {nodes} nodes)")
    print("pid: " + ",".join(str(n.pid) if n.pid is not None else "-" for n in cluster.nodes))
    print(f"bootstrap: {cluster.bootstrap}")
    return 0 if cluster.running else EXIT_NOT_RUNNING
