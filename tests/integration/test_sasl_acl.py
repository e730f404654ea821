"""SASL (SCRAM-SHA-512) and ACLs against a real broker, not imitated client logs.

One module-scoped `LocalBroker` (own ports and data dir) has four listeners:
PLAINTEXT (inter-broker and the readiness probe; its principal User:ANONYMOUS is a
super user), CONTROLLER, SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-512, over TLS with
a throw-away CA). Its storage is formatted with the SCRAM users admin (super user),
alice and bob, and it runs Kafka's StandardAuthorizer with
`allow.everyone.if.no.acl.found=false`, so a principal may do only what an ACL grants.

- SASL: the worker, `streamrec replay` and `streamrec state dump` log in as alice
  (granted ALL on `sasl-*` topics and groups) and work over both SASL listeners; a
  wrong password, an unknown user, a mechanism the broker does not enable and the
  wrong kind of listener fail within seconds, not after kafka-python's 30 s
  bootstrap timeout, and `streamrec worker` exits 2 naming the --sasl flags.
- ACLs: bob gets exactly the ACLs docs/RELIABILITY.md lists and the worker serves
  (with and without --exactly-once); without any one of them `streamrec worker`
  exits 2 naming the resource, the operation and the principal, and commits nothing;
  an ACL revoked while the worker runs stops it the same way, committing nothing
  past what was published before.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import KafkaError

from streamrec.cli.main import main
from streamrec.kafka_io.clients import ensure_topics, make_admin, make_consumer, make_producer
from streamrec.kafka_io.errors import KafkaAuthorizationError, KafkaSecurityError
from streamrec.kafka_io.local.broker import LocalBroker
from streamrec.kafka_io.local.config import BrokerConfig
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.state.changelog import changelog_topic
from tests.conftest import BROKER_START_TIMEOUT_S, free_port
from tests.integration.helpers import consume_until, event, latest_by_user, running
from tests.tls import make_ca, make_pkcs12, make_server_cert

pytestmark = [pytest.mark.integration, pytest.mark.both_clients]

# The bound on a refused start: "at once" with margin for a loaded machine (a refused
# start takes well under a second here; the CLI one, with Python and torch starting,
# ~3 s), and far from kafka-python's own 30 s bootstrap timeout, which it must beat.
FAIL_FAST_S = 10.0
MECHANISM = "SCRAM-SHA-512"
USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
ACL_DOC = 'docs/RELIABILITY.md, "Security: the ACLs the worker needs"'
RELIABILITY = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"
ALLOW = ACLPermissionType.ALLOW
Op = ACLOperation


@dataclass(frozen=True)
class SaslBroker:
    """The broker's listeners and the CA that signed its certificate."""

    plaintext: str
    sasl_plaintext: str
    sasl_ssl: str
    ca: Path

    def address(self, protocol: str) -> str:
        return self.sasl_ssl if protocol == "SASL_SSL" else self.sasl_plaintext

    def security(self, protocol: str = "SASL_PLAINTEXT", user: str = "alice",
                 password: str | None = None, mechanism: str = MECHANISM) -> KafkaSecurity:
        """SCRAM login as `user` (its own password unless one is given)."""
        return KafkaSecurity(
            protocol=protocol,  # type: ignore[arg-type]
            ssl_cafile=self.ca if protocol == "SASL_SSL" else None,
            sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username=user, sasl_password=password or USERS[user])

    def flags(self, protocol: str = "SASL_PLAINTEXT", user: str = "alice",
              password: str | None = None) -> list[str]:
        """The same as command-line flags, --bootstrap included."""
        flags = ["--bootstrap", self.address(protocol), "--security-protocol", protocol,
                 "--sasl-mechanism", MECHANISM, "--sasl-username", user,
                 "--sasl-password", password or USERS[user]]
        return flags + (["--ssl-cafile", str(self.ca)] if protocol == "SASL_SSL" else [])

    def admin(self) -> KafkaAdminClient:
        """An admin client logged in as the super user."""
        return KafkaAdminClient(bootstrap_servers=self.sasl_plaintext, client_id="acl-test-admin",
                                **self.security(user="admin").client_kwargs())


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    tls = tmp_path_factory.mktemp("tls")
    ca = make_ca(tls, "ca")
    password = uuid.uuid4().hex
    keystore = make_pkcs12(tls, make_server_cert(tls, ca), ca, password)
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    port, controller_port, sasl_port, sasl_ssl_port = sorted(ports)
    broker = LocalBroker(BrokerConfig(
        port=port, controller_port=controller_port, sasl_port=sasl_port,
        sasl_ssl_port=sasl_ssl_port, ssl_keystore=keystore, ssl_keystore_password=password,
        sasl_mechanism=MECHANISM, scram_users=tuple(USERS.items()),
        extra_properties=(("authorizer.class.name", AUTHORIZER),
                          ("super.users", "User:admin;User:ANONYMOUS"),
                          ("allow.everyone.if.no.acl.found", "false")),
        data_dir=tmp_path_factory.mktemp("kafka-sasl")))
    try:
        plaintext = broker.start(timeout_s=BROKER_START_TIMEOUT_S)
        found = SaslBroker(plaintext, broker.config.sasl_bootstrap or "",
                           broker.config.sasl_ssl_bootstrap or "", ca.cert)
        prefixed = ACLResourcePatternType.PREFIXED
        grant(found, [ACL("User:alice", "*", Op.ALL, ALLOW,
                          ResourcePattern(kind, "sasl-", prefixed))
                      for kind in (ResourceType.TOPIC, ResourceType.GROUP)])
        yield found
    finally:
        broker.stop()


# -- helpers ------------------------------------------------------------------------------


def grant(broker: SaslBroker, acls: list[ACL]) -> None:
    admin = broker.admin()
    try:
        result = admin.create_acls(acls)
    finally:
        admin.close()
    assert not result["failed"], result["failed"]


def worker_config(bootstrap: str, model_dir: Path, security: KafkaSecurity, prefix: str,
                  exactly_once: bool = False) -> WorkerConfig:
    suffix = uuid.uuid4().hex[:8]
    return WorkerConfig(
        model_dir=model_dir, bootstrap=bootstrap, events_topic=f"{prefix}-events-{suffix}",
        recommendations_topic=f"{prefix}-recs-{suffix}", dead_letter_topic=f"{prefix}-dlq-{suffix}",
        items_topic=f"{prefix}-items-{suffix}",
        group_id=f"{prefix}-group-{suffix}", metrics_port=-1, max_batch=16, max_wait_ms=20, k=5,
        device="cpu", partitions=2, commit_interval_ms=200, exactly_once=exactly_once,
        security=security)


def worker_flags(cfg: WorkerConfig, model_dir: Path) -> list[str]:
    flags = ["--model", str(model_dir), "--device", "cpu", "--metrics-port", "-1",
             "--events-topic", cfg.events_topic, "--recommendations-topic",
             cfg.recommendations_topic, "--dead-letter-topic", cfg.dead_letter_topic,
             "--items-topic", cfg.items_topic,
             "--group-id", cfg.group_id, "--partitions", str(cfg.partitions)]
    return flags + (["--exactly-once"] if cfg.exactly_once else [])


def create_topics(broker: SaslBroker, cfg: WorkerConfig, *, outputs: bool) -> None:
    """As the super user: the input topics (events, items), and with `outputs` every topic
    the worker uses."""
    topics = {cfg.events_topic: cfg.partitions, cfg.items_topic: cfg.partitions}
    configs: dict[str, dict[str, str]] = {cfg.items_topic: {"cleanup.policy": "compact"}}
    if outputs:
        topics |= {cfg.recommendations_topic: cfg.partitions,
                   cfg.dead_letter_topic: cfg.partitions,
                   changelog_topic(cfg.group_id): cfg.partitions}
        configs[changelog_topic(cfg.group_id)] = {"cleanup.policy": "compact"}
    ensure_topics(broker.sasl_plaintext, topics, configs=configs,
                  security=broker.security(user="admin"))


def produce(broker: SaslBroker, topic: str, users: range, items: int = 3,
            garbage: bool = True) -> dict[str, list[str]]:
    """As the super user: `items` events per user (and one record that is no event)."""
    history = {f"user-{u}": [f"i{(u * 7 + n) % 40 + 1}" for n in range(items)] for u in users}
    producer = make_producer(broker.sasl_plaintext, "acl-test-producer",
                             broker.security(user="admin"))
    try:
        for user, user_items in history.items():
            for item in user_items:
                key, value = event(user, item)
                producer.send(topic, key=key, value=value)
        if garbage:
            producer.send(topic, key=b"garbage", value=b"{not json")
        producer.flush()
    finally:
        producer.close()
    return history


@dataclass(frozen=True)
class DocumentedAcl:
    """One ACL of the table in docs/RELIABILITY.md, its resource named as the doc names
    it (`--events-topic`, `<group-id>-histories-changelog`, ...)."""

    resource: str  # topic, group, transactional id
    name: str
    prefixed: bool
    operation: str  # READ, WRITE, CREATE
    when: str  # always, create (the worker creates its topics), exactly-once

    def label(self) -> str:
        """A test id: events-READ, changelog-CREATE, transactional-id-WRITE, ..."""
        if self.name.startswith("--"):
            what = self.name.removeprefix("--").removesuffix("-topic")
        elif self.name.endswith("-changelog"):
            what = "changelog"
        else:
            what = self.resource.replace(" ", "-")
        return f"{what}-{self.operation}"

    def resolve(self, cfg: WorkerConfig) -> str:
        """The resource's name for this worker configuration."""
        if self.name.startswith("--"):  # a flag: the WorkerConfig field of that name
            return str(getattr(cfg, self.name.removeprefix("--").replace("-", "_")))
        return self.name.replace("<group-id>", cfg.group_id)


def acl_table(path: Path = RELIABILITY) -> list[DocumentedAcl]:
    """The ACL table of docs/RELIABILITY.md, one entry per resource and operation; a row
    this reader does not understand fails the test, so doc and test cannot drift apart."""
    text = path.read_text(encoding="utf-8")
    section = text.split("## Security: the ACLs the worker needs", 1)[1].split("\n## ", 1)[0]
    header, _, *rows = [line for line in section.splitlines() if line.startswith("|")]
    assert cells(header) == ["resource", "name", "operations", "when"], header
    whens = {"always": "always", "only if the worker creates them": "create",
             "only with `--exactly-once`": "exactly-once"}
    table = []
    for row in rows:
        resource, name, operations, when = cells(row)
        if name == "the recommendations, dead-letter and changelog topics":
            names = ["--recommendations-topic", "--dead-letter-topic",
                     "<group-id>-histories-changelog"]
        else:
            names = re.findall(r"`([^`]+)`", name)[:1]
        kind = next((v for k, v in whens.items() if when.startswith(k)), None)
        ops = operations.split(" and ")
        if (resource not in KINDS or not names or kind is None
                or not set(ops) <= {"READ", "WRITE", "CREATE"}):
            raise AssertionError(f"{path.name}: ACL row not understood: {row}")
        table += [DocumentedAcl(resource, n, name.startswith("prefix "), op, kind)
                  for n in names for op in ops]
    return table


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


KINDS = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
         "transactional id": ResourceType.TRANSACTIONAL_ID}
ACL_TABLE = acl_table()


def documented_acls(principal: str, cfg: WorkerConfig, *, create: bool = False) -> list[ACL]:
    """Exactly the ACLs docs/RELIABILITY.md tells an operator to grant the worker: with
    `create`, CREATE on the topics it creates (CREATE on the cluster would do too)."""
    wanted = {"always", *(["create"] if create else []),
              *(["exactly-once"] if cfg.exactly_once else [])}
    return [ACL(principal, "*", Op[acl.operation], ALLOW, ResourcePattern(
                KINDS[acl.resource], acl.resolve(cfg), ACLResourcePatternType.PREFIXED
                if acl.prefixed else ACLResourcePatternType.LITERAL))
            for acl in ACL_TABLE if acl.when in wanted]


def committed(broker: SaslBroker, group: str) -> dict[int, int]:
    """The group's committed offsets per partition, read as the super user (retrying
    while the offsets topic is still being created: a fresh broker has none)."""
    deadline = time.monotonic() + 60
    admin = broker.admin()
    try:
        while True:
            try:
                offsets = admin.list_group_offsets(group).get(group, {})
                break
            except KafkaError as exc:
                if not exc.retriable or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


def may_write(broker: SaslBroker, user: str, topic: str) -> bool:
    """Whether the broker lets `user` WRITE `topic` now (its KIP-430 verdict)."""
    admin = KafkaAdminClient(bootstrap_servers=broker.sasl_plaintext, client_id="acl-test-check",
                             **broker.security(user=user).client_kwargs())
    try:
        described = admin.describe_topics([topic])[0]
    finally:
        admin.close()
    return "WRITE" in (described.get("authorized_operations") or ())


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def run_worker(worker: Worker, timeout_s: float = 60.0) -> BaseException | None:
    """Run `worker` expecting it to fail: what it raised (None if it returned). A worker
    still running after `timeout_s` is stopped and the test fails."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # returned to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="failing-worker")
    thread.start()
    thread.join(timeout=timeout_s)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=60)
        raise AssertionError(f"the worker still ran after {timeout_s:.0f}s")
    return failure[0] if failure else None


def records_of(broker: SaslBroker, topic: str, count: int) -> list[Any]:
    """Read `topic` as the super user until `count` records are there."""
    return consume_until(broker.sasl_plaintext, topic, lambda got: len(got) >= count,
                         timeout_s=60, security=broker.security(user="admin"))


@dataclass
class CliRun:
    code: int
    out: str
    err: str

    def error_line(self, command: str) -> str:
        """The one-line error `streamrec <command>` printed (empty if none)."""
        prefix = f"streamrec {command}: error: "
        return next((line for line in self.err.splitlines() if line.startswith(prefix)), "")


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliRun]]:
    """`cli(*argv)`: run `streamrec` in this process; the signal handlers it installs
    are put back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def call(*argv: str) -> CliRun:
        capsys.readouterr()
        code = main(list(argv))
        out = capsys.readouterr()
        return CliRun(code, out.out, out.err)

    try:
        yield call
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# -- SASL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_replay_worker_and_state_dump_work_over_sasl(
    sasl_broker: SaslBroker, tiny_checkpoint: Path, tmp_path: Path,
    cli: Callable[..., CliRun], protocol: str,
) -> None:
    flags = sasl_broker.flags(protocol)
    cfg = worker_config(sasl_broker.address(protocol), tiny_checkpoint,
                        sasl_broker.security(protocol), prefix="sasl")
    history = {f"u{u}": [f"i{(u * 5 + n) % 40 + 1}" for n in range(3)] for u in range(8)}
    data = tmp_path / "events.csv"
    data.write_text("user_id,item_id,ts\n" + "".join(
        f"{user},{item},{1_700_000_000 + n}\n"
        for user, items in history.items() for n, item in enumerate(items)))

    replayed = cli("replay", "--data", str(data), "--format", "csv", "--topic",
                   cfg.events_topic, "--rate", "0", "--partitions", "2", *flags)
    assert replayed.code == 0, replayed.err
    assert f"replayed 24 events to {cfg.events_topic}" in replayed.out

    latest: dict[str, dict[str, Any]] = {}
    with running(Worker(cfg)):
        consume_until(cfg.bootstrap, cfg.recommendations_topic,
                      lambda records: latest_by_user(records, latest) >= set(history),
                      security=cfg.security)
    assert set(latest) == set(history)

    dumped = cli("state", "dump", "--group-id", cfg.group_id, *flags)
    assert dumped.code == 0, dumped.err
    state = {doc["user_id"]: doc["items"]
             for doc in map(json.loads, dumped.out.splitlines())}
    assert state == history


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_wrong_password_fails_the_worker_fast_with_the_cause(
    sasl_broker: SaslBroker, tiny_checkpoint: Path, protocol: str,
) -> None:
    security = sasl_broker.security(protocol, password="not-the-password")
    worker = Worker(worker_config(sasl_broker.address(protocol), tiny_checkpoint, security,
                                  prefix="sasl"))
    began = time.monotonic()
    failure = run_worker(worker, FAIL_FAST_S)
    assert time.monotonic() - began < FAIL_FAST_S
    assert isinstance(failure, KafkaSecurityError), failure
    text = str(failure)
    assert text.startswith(f"authentication to {sasl_broker.address(protocol)} failed: "
                           "SaslAuthenticationFailedError: ")
    assert "invalid credentials" in text
    assert text.endswith(f"check --sasl-mechanism ({MECHANISM}), --sasl-username and "
                         "--sasl-password")


def test_worker_command_exits_2_on_a_wrong_password_within_the_bound(
    sasl_broker: SaslBroker, tiny_checkpoint: Path,
) -> None:
    cfg = worker_config(sasl_broker.sasl_plaintext, tiny_checkpoint, KafkaSecurity(),
                        prefix="sasl")
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "streamrec.cli.main", "worker", *worker_flags(cfg, tiny_checkpoint),
         *sasl_broker.flags(password="not-the-password")],
        capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - began  # interpreter and torch start-up included
    assert done.returncode == 2, done.stderr
    assert elapsed < FAIL_FAST_S, f"took {elapsed:.1f}s"
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"streamrec worker: error: authentication to {sasl_broker.sasl_plaintext} failed: ")
    assert last.endswith("--sasl-username and --sasl-password")


@pytest.mark.parametrize("factory", ["admin", "producer", "consumer"])
def test_every_client_factory_refuses_bad_credentials_fast(
    sasl_broker: SaslBroker, factory: str,
) -> None:
    security = sasl_broker.security("SASL_SSL", user="mallory", password="guess")
    make = {
        "admin": lambda: make_admin(sasl_broker.sasl_ssl, "t", security),
        "producer": lambda: make_producer(sasl_broker.sasl_ssl, "t", security),
        "consumer": lambda: make_consumer(sasl_broker.sasl_ssl, "g", "t", security),
    }[factory]
    began = time.monotonic()
    with pytest.raises(KafkaSecurityError, match=rf"authentication to {sasl_broker.sasl_ssl} "
                                                 r"failed: .*--sasl-password"):
        make()
    assert time.monotonic() - began < FAIL_FAST_S


def test_sasl_misconfigurations_are_explained_fast(sasl_broker: SaslBroker) -> None:
    b = sasl_broker
    cases = [
        (b.sasl_plaintext, b.security(mechanism="SCRAM-SHA-256"),
         f"SASL mechanism SCRAM-SHA-256 is not enabled on {b.sasl_plaintext} (it offers "
         f"{MECHANISM}) — check --sasl-mechanism"),
        (b.plaintext, b.security(),
         f"{b.plaintext} is not a SASL listener: it refused the SASL handshake — check "
         "--bootstrap and --security-protocol (SASL_PLAINTEXT)"),
        (b.sasl_ssl, b.security(),
         f"is {b.sasl_ssl} a SASL_PLAINTEXT listener? (a TLS listener needs SASL_SSL"),
        (b.sasl_plaintext, b.security("SASL_SSL"),
         f"TLS handshake with {b.sasl_plaintext} failed"),
    ]
    for address, security, expected in cases:
        began = time.monotonic()
        with pytest.raises(KafkaSecurityError) as caught:
            make_admin(address, "t", security)
        assert time.monotonic() - began < FAIL_FAST_S
        assert expected in str(caught.value)


# -- ACLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("exactly_once", [False, True], ids=["default", "exactly-once"])
def test_the_documented_acls_are_all_the_worker_needs(
    sasl_broker: SaslBroker, tiny_checkpoint: Path, exactly_once: bool,
) -> None:
    """Default mode creates its output topics (CREATE on them); exactly-once runs on
    topics an operator made (no CREATE). Neither has IDEMPOTENT_WRITE on the cluster."""
    cfg = worker_config(sasl_broker.sasl_ssl, tiny_checkpoint,
                        sasl_broker.security("SASL_SSL", user="bob"), prefix="acl",
                        exactly_once=exactly_once)
    create_topics(sasl_broker, cfg, outputs=exactly_once)
    grant(sasl_broker, documented_acls("User:bob", cfg, create=not exactly_once))
    history = produce(sasl_broker, cfg.events_topic, range(10))
    events = sum(map(len, history.values())) + 1  # and the garbage record

    latest: dict[str, dict[str, Any]] = {}
    with running(Worker(cfg)):
        consume_until(sasl_broker.sasl_plaintext, cfg.recommendations_topic,  # bob may not READ
                      lambda records: latest_by_user(records, latest) >= set(history),
                      security=sasl_broker.security(user="admin"))
        wait_for(lambda: sum(committed(sasl_broker, cfg.group_id).values()) == events,
                 "every event's offset committed")
    assert set(latest) == set(history)
    assert len(records_of(sasl_broker, cfg.dead_letter_topic, 1)) == 1
    assert len(records_of(sasl_broker, changelog_topic(cfg.group_id), len(history))) >= 10


MISSING = {acl.label(): acl for acl in ACL_TABLE}  # every documented ACL, one at a time


@pytest.mark.parametrize("missing", list(MISSING))
def test_worker_command_without_an_acl_exits_2_naming_it_and_commits_nothing(
    sasl_broker: SaslBroker, tiny_checkpoint: Path, cli: Callable[..., CliRun], missing: str,
) -> None:
    acl = MISSING[missing]
    cfg = worker_config(sasl_broker.sasl_plaintext, tiny_checkpoint, KafkaSecurity(),
                        prefix="acl", exactly_once=acl.when == "exactly-once")
    name = acl.resolve(cfg)
    creates = acl.when == "create"  # CREATE is needed only if the worker creates its topics
    create_topics(sasl_broker, cfg, outputs=not creates)
    produce(sasl_broker, cfg.events_topic, range(4))
    acls = documented_acls("User:bob", cfg, create=creates)
    kept = [a for a in acls
            if not (a.resource_pattern.resource_type == KINDS[acl.resource]
                    and a.resource_pattern.resource_name == name
                    and a.operation == Op[acl.operation])]
    assert len(kept) == len(acls) - 1
    grant(sasl_broker, kept)

    began = time.monotonic()
    run = cli("worker", *worker_flags(cfg, tiny_checkpoint), *sasl_broker.flags(user="bob"))
    assert time.monotonic() - began < FAIL_FAST_S
    assert run.code == 2, run.err
    op, resource = acl.operation, acl.resource
    if acl.resource == "transactional id":  # granted by prefix, named in full
        name = cfg.transactional_id
    line = run.error_line("worker")
    if creates:  # a topic it may not create may also be one it may not see
        assert line.startswith(f"streamrec worker: error: not authorized to CREATE topic {name} "
                               "(principal User:bob): it does not exist, or User:bob may not "
                               "DESCRIBE it;"), line
        assert line.endswith(f"(see {ACL_DOC})"), line
    else:
        assert line == (
            f"streamrec worker: error: not authorized to {op} {resource} {name} (principal "
            f"User:bob): grant User:bob {op} on {resource} {name} (see {ACL_DOC})")
    assert committed(sasl_broker, cfg.group_id) == {}


@pytest.mark.parametrize("granted", [None, Op.DESCRIBE], ids=["invisible", "describe-only"])
def test_state_dump_without_read_on_the_changelog_says_so(
    sasl_broker: SaslBroker, cli: Callable[..., CliRun], granted: ACLOperation | None,
) -> None:
    group = f"acl-group-{uuid.uuid4().hex[:8]}"
    topic = changelog_topic(group)
    ensure_topics(sasl_broker.sasl_plaintext, {topic: 1},
                  security=sasl_broker.security(user="admin"))
    produce(sasl_broker, topic, range(1), items=1, garbage=False)
    if granted is not None:
        grant(sasl_broker, [ACL("User:bob", "*", granted, ALLOW,
                                ResourcePattern(ResourceType.TOPIC, topic))])
    run = cli("state", "dump", "--group-id", group, "--timeout", "30",
              *sasl_broker.flags(user="bob"))
    assert run.code == 2, run.err
    line = run.error_line("state")
    if granted is None:  # the topic is invisible to bob: no telling whether it exists
        assert line.endswith(f"(check --group-id; with ACLs, User:bob needs READ on topic {topic})")
    else:
        assert line == (f"streamrec state: error: not authorized to READ topic {topic} (principal "
                        f"User:bob): grant User:bob READ on topic {topic} (see {ACL_DOC})")


def test_a_worker_that_may_not_create_its_topics_says_so(
    sasl_broker: SaslBroker, tiny_checkpoint: Path,
) -> None:
    cfg = worker_config(sasl_broker.sasl_plaintext, tiny_checkpoint,
                        sasl_broker.security(user="bob"), prefix="acl")
    create_topics(sasl_broker, cfg, outputs=False)
    grant(sasl_broker, documented_acls("User:bob", cfg, create=False))
    failure = run_worker(Worker(cfg))
    assert isinstance(failure, KafkaAuthorizationError), failure
    assert str(failure).startswith(
        f"not authorized to CREATE topic {cfg.recommendations_topic} (principal User:bob): it "
        "does not exist, or User:bob may not DESCRIBE it;")
    assert committed(sasl_broker, cfg.group_id) == {}


def test_an_acl_revoked_while_running_stops_the_worker_without_committing_past_it(
    sasl_broker: SaslBroker, tiny_checkpoint: Path,
) -> None:
    cfg = worker_config(sasl_broker.sasl_plaintext, tiny_checkpoint,
                        sasl_broker.security(user="bob"), prefix="acl")
    create_topics(sasl_broker, cfg, outputs=True)
    grant(sasl_broker, documented_acls("User:bob", cfg))
    first = produce(sasl_broker, cfg.events_topic, range(6), garbage=False)
    served = sum(map(len, first.values()))

    worker = Worker(cfg)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # checked below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True, name="acl-revoked-worker")
    thread.start()
    try:
        wait_for(lambda: sum(committed(sasl_broker, cfg.group_id).values()) == served,
                 "the first events committed")
        before = committed(sasl_broker, cfg.group_id)
        admin = sasl_broker.admin()
        try:
            admin.delete_acls([ACLFilter("User:bob", "*", Op.WRITE, ALLOW, ResourcePatternFilter(
                ResourceType.TOPIC, cfg.recommendations_topic, ACLResourcePatternType.LITERAL))])
        finally:
            admin.close()
        wait_for(lambda: not may_write(sasl_broker, "bob", cfg.recommendations_topic),
                 "the broker to apply the revocation")
        produce(sasl_broker, cfg.events_topic, range(6, 12), garbage=False)
        thread.join(timeout=60)
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(failure) == 1, failure
    assert isinstance(failure[0], KafkaAuthorizationError), failure
    recs = cfg.recommendations_topic
    assert str(failure[0]) == (
        f"not authorized to WRITE topic {recs} (principal User:bob): grant User:bob WRITE on "
        f"topic {recs} (see {ACL_DOC})")
    assert committed(sasl_broker, cfg.group_id) == before
