"""`streamrec broker {start,stop,status}`: the local single-node Kafka broker.

For development and the demo (see `streamrec.kafka_io.local_broker`). The flags are
short because they sit under `broker`; their environment variables carry the
`BROKER_` prefix so they cannot be mistaken for the worker's settings:

    --host             STREAMREC_BROKER_HOST             (127.0.0.1)
    --port             STREAMREC_BROKER_PORT             (9092, the bootstrap port)
    --controller-port  STREAMREC_BROKER_CONTROLLER_PORT  (9093)
    --data-dir         STREAMREC_BROKER_DATA_DIR         (<checkout>/.cache/kafka/data)
    --libs-dir         STREAMREC_BROKER_LIBS_DIR         (<checkout>/.cache/kafka/libs)
    --timeout          STREAMREC_BROKER_TIMEOUT          (start: 90 s, stop: 30 s)

`status` exits 0 when the broker runs and 3 when it does not (like `systemctl status`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamrec.cli.flags import env_flag
from streamrec.kafka_io.local_broker import BrokerConfig, LocalBroker

EXIT_NOT_RUNNING = 3


def register(sub: argparse._SubParsersAction) -> None:
    """Add `streamrec broker` and its three actions."""
    parser = sub.add_parser(
        "broker", help="start, stop or query the local Kafka broker",
        description="A local single-node KRaft Kafka broker from the Maven jars that "
                    "deploy/setup.sh fetches; for development, the demo and the tests.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text, timeout in (
        ("start", start, "start the broker (no-op if it runs) and print its bootstrap", 90.0),
        ("stop", stop, "stop the broker started from --data-dir", 30.0),
        ("status", status, "print running/pid/bootstrap; exit 0 if running, 3 if not", None),
    ):
        action = actions.add_parser(name, help=help_text, description=help_text)
        add_broker_flags(action)
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
    env_flag(parser, "--controller-port", defaults.controller_port, "KRaft controller port",
             int, env="--broker-controller-port")
    env_flag(parser, "--data-dir", defaults.data_dir,
             "config, logs, pidfile and partitions of the broker", Path, env="--broker-data-dir")
    env_flag(parser, "--libs-dir", defaults.libs_dir,
             "the Kafka jars (deploy/setup.sh fetches them)", Path, env="--broker-libs-dir")


def broker_from_args(args: argparse.Namespace) -> LocalBroker:
    """The broker the parsed flags describe."""
    return LocalBroker(BrokerConfig(
        host=args.host, port=args.port, controller_port=args.controller_port,
        data_dir=args.data_dir, libs_dir=args.libs_dir))


def start(args: argparse.Namespace) -> int:
    """Start the broker and print its bootstrap address on stdout."""
    print(broker_from_args(args).start(timeout_s=args.timeout))
    return 0


def stop(args: argparse.Namespace) -> int:
    """Stop the broker recorded in the data dir; not running is not an error."""
    broker = broker_from_args(args)
    bootstrap = broker.status().bootstrap
    if broker.stop(timeout_s=args.timeout):
        print(f"stopped the broker at {bootstrap}")
    else:
        print(f"no broker running from {broker.config.data_dir}")
    return 0


def status(args: argparse.Namespace) -> int:
    """Print running/pid/bootstrap; exit 0 when running, 3 when not."""
    state = broker_from_args(args).status()
    print(f"running: {'yes' if state.running else 'no'}")
    print(f"pid: {state.pid if state.pid is not None else '-'}")
    print(f"bootstrap: {state.bootstrap}")
    return 0 if state.running else EXIT_NOT_RUNNING
