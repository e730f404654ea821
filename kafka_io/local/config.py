"""How the local broker and cluster are configured, and the properties they run with.

`BrokerConfig` is the one settings object of the single-node broker (ports, data
dir, the Maven jars in `.cache/kafka/libs`, the templates in `deploy/kafka`, the
optional TLS and SASL listeners); `ClusterConfig` is the 3-node cluster's, with the
replication settings its nodes are rendered with. `project_dir` anchors
`.cache/kafka` to the checkout. The functions at the end fill the placeholders of
`deploy/kafka/server.properties.template` and build the storage format's SCRAM
arguments: pure values and text, no process is started here (`broker.py` and
`cluster.py` do that).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.common.errors import ConfigError

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "server.properties.template"
LOG4J_NAME = "log4j2.xml"
NODE_ID = 1  # node.id in the template
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_TOKEN = re.compile(r"[A-Za-z0-9._-]+")

# The cluster's nodes (cluster-node.properties.template):
CLUSTER_TEMPLATE_NAME = "cluster-node.properties.template"
MIN_NODES = 3  # replication factor 3 needs three brokers, and a quorum of 3 loses one
REPLICATION_FACTOR = 3  # default.replication.factor and of the internal topics
MIN_INSYNC_REPLICAS = 2  # an acks=all write is on two brokers before it is acknowledged
OFFSETS_PARTITIONS = 4  # __consumer_offsets partitions: a group's coordinator is one of them


def source_root() -> Path | None:
    """The checkout streamrec runs from (editable install), or None when installed."""
    root = Path(__file__).resolve().parents[2]  # kafka_io/local/config.py -> checkout
    return root if (root / "deploy" / "kafka" / TEMPLATE_NAME).is_file() else None


def project_dir() -> Path:
    """Where `.cache/kafka` lives: the checkout when running from one, else the cwd.

    Anchoring to the checkout lets `streamrec broker stop` find the broker that
    `start` launched from another directory, and finds the jars setup.sh fetched.
    """
    return source_root() or Path.cwd()


def default_templates_dir() -> Path:
    """`deploy/kafka` of the checkout, else of the current directory."""
    root = source_root()
    return (root or Path.cwd()) / "deploy" / "kafka"


@dataclass(frozen=True)
class BrokerConfig:
    """Where and how the local broker runs; paths are made absolute on creation."""

    host: str = "127.0.0.1"  # both listeners bind and advertise this address
    port: int = 9092  # PLAINTEXT listener: the clients' bootstrap port
    controller_port: int = 9093  # KRaft CONTROLLER listener
    data_dir: Path = field(default_factory=lambda: project_dir() / ".cache/kafka/data")
    libs_dir: Path = field(default_factory=lambda: project_dir() / ".cache/kafka/libs")
    templates_dir: Path = field(default_factory=default_templates_dir)
    jvm_options: tuple[str, ...] = ("-Xms256m", "-Xmx1g", "-XX:+ExitOnOutOfMemoryError")
    # Optional SSL listener beside the plaintext one (the security tests use it):
    # the broker's key and certificate in a PKCS12 keystore, and its password.
    ssl_port: int | None = None
    ssl_keystore: Path | None = None
    ssl_keystore_password: str | None = field(default=None, repr=False)
    # Optional SASL listeners (the SASL/ACL tests use them): SASL_PLAINTEXT, and
    # SASL_SSL with the SSL listener's keystore. The PLAINTEXT listener stays the
    # inter-broker and readiness-probe one. `scram_users` (name, password) get
    # credentials for `sasl_mechanism` when the storage is formatted.
    sasl_port: int | None = None
    sasl_ssl_port: int | None = None
    sasl_mechanism: str = "SCRAM-SHA-512"
    scram_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Appended to server.properties as `key=value` lines (an authorizer, super users).
    extra_properties: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        ports = {"port": self.port, "controller_port": self.controller_port}
        if self.ssl_port is not None:
            ports["ssl_port"] = self.ssl_port
            if self.ssl_keystore is None or not self.ssl_keystore_password:
                raise ConfigError("an SSL listener (ssl_port) needs ssl_keystore (PKCS12) "
                                  "and ssl_keystore_password")
        if self.sasl_port is not None:
            ports["sasl_port"] = self.sasl_port
        if self.sasl_ssl_port is not None:
            ports["sasl_ssl_port"] = self.sasl_ssl_port
            if self.ssl_keystore is None or not self.ssl_keystore_password:
                raise ConfigError("a SASL_SSL listener (sasl_ssl_port) needs ssl_keystore "
                                  "(PKCS12) and ssl_keystore_password")
        self._check_sasl()
        for name, value in ports.items():
            if not 0 < value < 65536:
                raise ConfigError(f"broker {name} must be in 1..65535, got {value}")
        if len(set(ports.values())) != len(ports):
            raise ConfigError(f"the broker's ports must all differ, got {ports}")
        for name in ("data_dir", "libs_dir", "templates_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())
        if self.ssl_keystore is not None:
            object.__setattr__(self, "ssl_keystore", Path(self.ssl_keystore).expanduser().resolve())

    @property
    def bootstrap(self) -> str:
        """The `host:port` clients bootstrap from."""
        return f"{self.host}:{self.port}"

    @property
    def ssl_bootstrap(self) -> str | None:
        """The `host:port` of the SSL listener, None without one."""
        return None if self.ssl_port is None else f"{self.host}:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str | None:
        """The `host:port` of the SASL_PLAINTEXT listener, None without one."""
        return None if self.sasl_port is None else f"{self.host}:{self.sasl_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """The `host:port` of the SASL_SSL listener, None without one."""
        return None if self.sasl_ssl_port is None else f"{self.host}:{self.sasl_ssl_port}"

    @property
    def extra_ports(self) -> dict[str, int]:
        """The optional listeners' ports, by field name (the pre-flight checks them)."""
        names = ("ssl_port", "sasl_port", "sasl_ssl_port")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def _check_sasl(self) -> None:
        """Refuse SASL settings the broker would reject or the format tool misparse."""
        if self.sasl_mechanism not in SCRAM_MECHANISMS:
            raise ConfigError(f"the local broker's sasl_mechanism must be one of "
                              f"{', '.join(SCRAM_MECHANISMS)}, got {self.sasl_mechanism!r}")
        if self.scram_users and self.sasl_port is None and self.sasl_ssl_port is None:
            raise ConfigError("scram_users need a SASL listener (sasl_port or sasl_ssl_port)")
        for name, password in self.scram_users:
            # `--add-scram 'MECH=[name=N,password=P]'`: keep N and P free of its syntax.
            if not SCRAM_TOKEN.fullmatch(name) or not SCRAM_TOKEN.fullmatch(password):
                raise ConfigError(f"SCRAM user {name!r}: name and password may hold only "
                                  "letters, digits, '.', '_' and '-'")
        for key, value in self.extra_properties:
            if not key or "=" in key or "\n" in key or "\n" in value:
                raise ConfigError(f"extra broker property {key!r}={value!r} is not one "
                                  "`key=value` line")



def _default_ports(base: int) -> tuple[int, ...]:
    return tuple(base + i for i in range(MIN_NODES))


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how the nodes run: node n (from 1) listens on `ports[n - 1]` for
    clients and `controller_ports[n - 1]` for the quorum; paths made absolute."""

    host: str = "127.0.0.1"
    ports: tuple[int, ...] = field(default_factory=lambda: _default_ports(9092))
    controller_ports: tuple[int, ...] = field(default_factory=lambda: _default_ports(9095))
    data_dir: Path = field(default_factory=lambda: project_dir() / ".cache/kafka/data")
    libs_dir: Path = field(default_factory=lambda: project_dir() / ".cache/kafka/libs")
    templates_dir: Path = field(default_factory=default_templates_dir)
    # Three JVMs share the machine: a smaller heap than the single broker's.
    jvm_options: tuple[str, ...] = ("-Xms128m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError")

    def __post_init__(self) -> None:
        object.__setattr__(self, "ports", tuple(self.ports))
        object.__setattr__(self, "controller_ports", tuple(self.controller_ports))
        if len(self.ports) < MIN_NODES:
            raise ConfigError(f"a cluster needs at least {MIN_NODES} nodes (replication factor "
                              f"{REPLICATION_FACTOR}), got {len(self.ports)}")
        if len(self.controller_ports) != len(self.ports):
            raise ConfigError(f"one controller port per node: {len(self.ports)} client ports "
                              f"but {len(self.controller_ports)} controller ports")
        everything = self.ports + self.controller_ports
        bad = [p for p in everything if not 0 < p < 65536]
        if bad:
            raise ConfigError(f"cluster ports must be in 1..65535, got {bad}")
        if len(set(everything)) != len(everything):
            raise ConfigError(f"the cluster's ports must all differ, got clients {self.ports} "
                              f"and controllers {self.controller_ports}")
        for name in ("data_dir", "libs_dir", "templates_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser().resolve())

    @classmethod
    def consecutive(cls, nodes: int = MIN_NODES, port: int = 9092,
                    controller_port: int | None = None, **kwargs: object) -> ClusterConfig:
        """Clients on `port`.. `port + nodes - 1`, controllers on `controller_port`..
        (default: right after the clients, `port + nodes`..), as `broker start --nodes` does."""
        first_controller = port + nodes if controller_port is None else controller_port
        return cls(ports=tuple(port + i for i in range(nodes)),
                   controller_ports=tuple(first_controller + i for i in range(nodes)),
                   **kwargs)  # type: ignore[arg-type]

    @property
    def nodes(self) -> int:
        """How many nodes: one per client port."""
        return len(self.ports)

    @property
    def node_ids(self) -> range:
        """The nodes' `node.id`s: 1..nodes."""
        return range(1, self.nodes + 1)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated, as clients bootstrap."""
        return ",".join(f"{self.host}:{p}" for p in self.ports)

    @property
    def voters(self) -> str:
        """`controller.quorum.voters`: `id@host:controller_port` of every node."""
        return ",".join(f"{n}@{self.host}:{p}" for n, p in zip(self.node_ids,
                                                                self.controller_ports,
                                                                strict=True))

    def node_dir(self, node_id: int) -> Path:
        """Node `node_id`'s config, logs, pidfile and partitions."""
        return self.data_dir / f"node-{node_id}"

    def node_config(self, node_id: int) -> BrokerConfig:
        """The `BrokerConfig` of node `node_id` (1-based)."""
        if node_id not in self.node_ids:
            raise ConfigError(f"no node {node_id} in a cluster of {self.nodes}")
        return BrokerConfig(
            host=self.host, port=self.ports[node_id - 1],
            controller_port=self.controller_ports[node_id - 1],
            data_dir=self.node_dir(node_id), libs_dir=self.libs_dir,
            templates_dir=self.templates_dir, jvm_options=self.jvm_options)


def ssl_listener_settings(cfg: BrokerConfig) -> dict[str, str]:
    """The template's ssl placeholders: all empty without a TLS listener.

    The keystore settings serve the SASL_SSL listener too, so they are rendered
    when either listener is configured; the SSL listener itself only with ssl_port.
    """
    if cfg.ssl_port is None and cfg.sasl_ssl_port is None:
        return {"ssl_listener": "", "ssl_protocol": "", "ssl_settings": ""}
    settings = "\n".join([
        "",
        "# --- SSL listener: server-side TLS only, clients need no certificate ---",
        "ssl.keystore.type=PKCS12",
        f"ssl.keystore.location={cfg.ssl_keystore}",
        f"ssl.keystore.password={cfg.ssl_keystore_password}",
        f"ssl.key.password={cfg.ssl_keystore_password}",
        "ssl.client.auth=none",
        "",
    ])
    if cfg.ssl_port is None:
        return {"ssl_listener": "", "ssl_protocol": "", "ssl_settings": settings}
    return {"ssl_listener": f",SSL://{cfg.host}:{cfg.ssl_port}", "ssl_protocol": ",SSL:SSL",
            "ssl_settings": settings}


def sasl_listener_settings(cfg: BrokerConfig) -> dict[str, str]:
    """The template's sasl placeholders: all empty without a SASL listener.

    SCRAM on the broker side needs only the login module (no credentials: the
    inter-broker listener is PLAINTEXT); the users live in the metadata log.
    """
    listeners = [(name, port) for name, port in (("SASL_PLAINTEXT", cfg.sasl_port),
                                                 ("SASL_SSL", cfg.sasl_ssl_port))
                 if port is not None]
    if not listeners:
        return {"sasl_listeners": "", "sasl_protocols": "", "sasl_settings": ""}
    mechanism = cfg.sasl_mechanism
    lines = ["", f"# --- SASL listeners: {mechanism}, users created at format time ---",
             f"sasl.enabled.mechanisms={mechanism}"]
    lines += [f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config="
              "org.apache.kafka.common.security.scram.ScramLoginModule required;"
              for name, _ in listeners]
    return {
        "sasl_listeners": "".join(f",{name}://{cfg.host}:{port}" for name, port in listeners),
        "sasl_protocols": "".join(f",{name}:{name}" for name, _ in listeners),
        "sasl_settings": "\n".join([*lines, ""]),
    }


def extra_properties_text(cfg: BrokerConfig) -> str:
    """`extra_properties` as the last lines of server.properties (empty without any)."""
    if not cfg.extra_properties:
        return ""
    lines = ["", "# --- Extra properties (BrokerConfig.extra_properties) ---"]
    lines += [f"{key}={value}" for key, value in cfg.extra_properties]
    return "\n".join([*lines, ""])


def scram_arguments(cfg: BrokerConfig) -> list[str]:
    """`--add-scram` arguments of the storage format: one SCRAM credential per user."""
    return [arg for name, password in cfg.scram_users
            for arg in ("--add-scram", f"{cfg.sasl_mechanism}=[name={name},password={password}]")]
