"""Authorization: the ACLs a command needs, checked up front and explained when refused.

`check_access` asks the broker, before a command reads or writes anything, whether
its principal may do what it needs, and lists every missing ACL at once;
`authorization_error` turns a refusal met later (an ACL revoked while running) into
a `KafkaAuthorizationError` naming the resource, the operation and the principal.
Both work on the port's types, so the messages are the same with either adapter;
docs/RELIABILITY.md lists the ACLs the worker needs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from streamrec.kafka_io.clients import make_admin
from streamrec.kafka_io.errors import ACL_DOC, KafkaAuthorizationError, KafkaClientError
from streamrec.kafka_io.port import Admin, ClientChoice
from streamrec.kafka_io.security import KafkaSecurity, principal_of

logger = logging.getLogger(__name__)



def not_authorized(
    operations: Collection[str], resource: str, name: str, security: KafkaSecurity,
) -> str:
    """`not authorized to WRITE topic t (principal User:u): grant User:u WRITE on topic t`."""
    ops = " and ".join(operations)
    who = principal_of(security)
    return (f"not authorized to {ops} {resource} {name} (principal {who}): grant {who} {ops} "
            f"on {resource} {name}")


def authorization_error(
    exc: BaseException, security: KafkaSecurity, *, reads: Collection[str] = (),
    group: str | None = None, transactional_id: str | None = None,
) -> KafkaAuthorizationError | None:
    """The KafkaAuthorizationError for a broker refusal in `exc` (or its causes), else None.

    The clients name the topic refused, not the operation: a topic in `reads` was
    being read (READ is missing), any other one written (WRITE is missing).
    """
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, KafkaClientError) and cause.denied):
        cause = cause.__cause__
    if not isinstance(cause, KafkaClientError):
        return None
    if cause.denied == "topic":
        names = list(cause.names) or ["(not named by the broker)"]
        text = "; ".join(not_authorized(["READ" if n in reads else "WRITE"], "topic", n, security)
                         for n in names)
    elif cause.denied == "group":
        text = not_authorized(["READ"], "group", group or _named(cause), security)
    elif cause.denied == "transactional_id":
        text = not_authorized(["WRITE"], "transactional id", transactional_id or _named(cause),
                              security)
    elif cause.denied == "cluster":
        who = principal_of(security)
        text = (f"not authorized on the cluster (principal {who}): {cause}; an idempotent "
                f"producer needs WRITE on the topics it writes (or IDEMPOTENT_WRITE on the "
                f"cluster)")
    else:
        text = f"not authorized (principal {principal_of(security)}): {cause}"
    return KafkaAuthorizationError(f"{text} (see {ACL_DOC})")


def _named(exc: KafkaClientError) -> str:
    return exc.names[0] if exc.names else str(exc)


def check_access(
    bootstrap: str, security: KafkaSecurity, topics: Mapping[str, Collection[str]], *,
    group: str | None = None, transactional_id: str | None = None,
    client_id: str = "streamrec-access-check", client: ClientChoice | None = None,
) -> None:
    """Raise KafkaAuthorizationError listing every ACL the principal lacks, before any work.

    `topics` maps each topic to the operations needed on it (READ, WRITE). The broker
    reports its own verdict per topic (KIP-430 authorized operations); a topic the
    principal may not even DESCRIBE lacks them all (READ and WRITE imply DESCRIBE),
    whether it exists or not. A topic that does not exist yet is left to its creation.
    The group must allow READ, the transactional id (exactly-once) WRITE. Anything
    the broker cannot answer is left to the clients, which fail on it themselves.
    """
    problems: list[str] = []
    admin = make_admin(bootstrap, client_id, security, client=client)
    try:
        problems += _topic_problems(admin, security, topics)
        if group is not None and _group_denied(admin, group):
            problems.append(not_authorized(["READ"], "group", group, security))
        if (transactional_id is not None
                and admin.may_write_transactional_id(transactional_id) is False):
            problems.append(not_authorized(["WRITE"], "transactional id", transactional_id,
                                           security))
    finally:
        admin.close()
    if problems:
        raise KafkaAuthorizationError(f"{'; '.join(problems)} (see {ACL_DOC})")


def _topic_problems(
    admin: Admin, security: KafkaSecurity, topics: Mapping[str, Collection[str]],
) -> list[str]:
    try:
        described = admin.describe_topics(list(topics))
    except KafkaClientError as exc:
        logger.debug("access check: cannot describe %s: %s", list(topics), exc)
        return []
    problems = []
    for name, needed in topics.items():
        topic = described.get(name)
        if topic is None:
            continue
        granted = topic.authorized_operations
        if topic.error == "denied":
            missing = list(needed)
        elif topic.error is None and granted and "ALL" not in granted:
            missing = [op for op in needed if op not in granted]
        else:  # does not exist yet, or the broker does not say
            missing = []
        if missing:
            problems.append(not_authorized(missing, "topic", name, security))
    return problems


def _group_denied(admin: Admin, group: str) -> bool:
    """Whether the group refuses this principal, or answers operations without READ."""
    try:
        granted = admin.group_operations(group)
    except KafkaClientError as exc:
        if exc.denied == "group":
            return True
        logger.debug("access check: %s", exc)  # e.g. no coordinator yet: the client will tell
        return False
    return bool(granted) and "READ" not in granted and "ALL" not in granted  # type: ignore[operator]
