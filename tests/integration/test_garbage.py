"""Failure test 4: 10,000 garbage records between valid events; the worker never falters.

Random bytes, truncated and deeply nested JSON, huge strings around the record and id
limits, invalid UTF-8, impossible timestamps, ids of the wrong type, empty values,
null keys and keys that are not the user id are produced between a few hundred valid
events. The oracle is `validate_event` itself, called on each record as sent: every
record it rejects must be on the dead-letter topic with the same reason (matched by
the `streamrec.source` header), every user with a valid event must get a
recommendation, the metrics must count exactly that, and the worker thread must run
through it all without an exception and then stop cleanly.

The garbage is drawn from a seeded `random.Random` by one small generator per kind,
so a failure reproduces exactly; the property tests of `validate_event` (hypothesis,
in tests/unit/worker/test_validate.py) explore the same space more widely, hermetically.
"""

from __future__ import annotations

import json
import math
import random
import string
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.publish import HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE
from streamrec.worker.validate import Event, Invalid, Limits, validate_event
from tests.integration.helpers import (
    committed_offsets,
    consume_until,
    end_offsets,
    event,
    metric_sum,
    producer,
    scrape,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 4
N_GARBAGE = 10_000
USERS = [f"user-{n}" for n in range(50)]
EVENTS_PER_USER = 6
ITEMS = [f"i{n}" for n in range(1, 41)]  # the tiny_checkpoint vocabulary
LIMITS = Limits()  # the worker's defaults: 64 KiB records, 256-char ids
Record = tuple[bytes | None, bytes | None]


# -- one generator per kind of garbage -------------------------------------------------

def _doc(rng: random.Random, **fields: Any) -> dict[str, Any]:
    user = rng.choice(USERS)
    return {"user_id": user, "item_id": rng.choice(ITEMS)} | fields


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def random_bytes(rng: random.Random) -> Record:
    return rng.choice(USERS).encode(), rng.randbytes(rng.randint(1, 300))


def truncated_json(rng: random.Random) -> Record:
    doc = _doc(rng, ts=1_700_000_000_000, type="click")
    value = _dumps(doc)
    return doc["user_id"].encode(), value[: rng.randint(1, len(value) - 1)]


def deep_nesting(rng: random.Random) -> Record:
    depth = rng.choice([500, 1_100, 5_000, 20_000, 30_000])
    doc = _doc(rng)
    nest = rng.choice(["[", '{"a":'])
    close = "]" if nest == "[" else "}"
    body = nest * depth + "1" + close * depth if rng.random() < 0.7 else nest * depth
    # Nested inside the item id: the one place where nesting cannot be ignored.
    value = _dumps(doc)[:-1] + b', "item_id": ' + body.encode() + b"}"
    return doc["user_id"].encode(), value


def huge_strings(rng: random.Random) -> Record:
    user = rng.choice(USERS)
    kind = rng.randrange(5)
    if kind == 0:  # just under / over the record limit, otherwise a valid event
        size = LIMITS.max_record_bytes + rng.randint(-40, 40)
        doc = _doc(rng, user_id=user, pad="")
        doc["pad"] = "x" * max(0, size - len(_dumps(doc)))
        doc["ts"] = "late"  # within the limit it is still refused, for its ts
        return user.encode(), _dumps(doc)
    if kind == 1:  # far over the limit: must be refused by length, not parsed
        return user.encode(), b'{"user_id": "' + b"u" * rng.randint(100_000, 1 << 20) + b'"}'
    if kind == 2:  # ids around the id limit
        n = LIMITS.max_id_chars + rng.choice([1, 2, 1000])
        return user.encode(), _dumps(_doc(rng, user_id=user, item_id="i" * n))
    if kind == 3:
        long_user = "u" * (LIMITS.max_id_chars + rng.randint(1, 100))
        return long_user.encode(), _dumps(_doc(rng, user_id=long_user))
    return b"k" * (4 * LIMITS.max_id_chars + rng.randint(1, 5000)), _dumps(_doc(rng))


def invalid_utf8(rng: random.Random) -> Record:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80"])
    doc = _doc(rng)
    value = _dumps(doc)
    if rng.random() < 0.2:  # the key, not the value, is broken
        return doc["user_id"].encode() + bad, value
    at = value.index(b'"item_id": "') + len(b'"item_id": "')
    return doc["user_id"].encode(), value[:at] + bad + value[at:]


BAD_TS: list[Any] = [
    math.nan, math.inf, -math.inf, -1, 0, 1_700_000_000, 1_700_000_000_000_000, 10**30,
    -(10**30), 1.7e12, 1_700_000_000_000.5, "1700000000000", "now", True, False, [1], {},
    946_684_799_999, 4_102_444_800_001,
]


def bad_timestamps(rng: random.Random) -> Record:
    doc = _doc(rng)
    if rng.random() < 0.05:  # a number Python refuses to parse (> 4300 digits)
        value = _dumps(doc)[:-1] + b', "ts": ' + b"9" * rng.randint(4301, 9000) + b"}"
        return doc["user_id"].encode(), value
    doc["ts"] = rng.choice(BAD_TS)
    return doc["user_id"].encode(), _dumps(doc)


BAD_IDS: list[Any] = [
    1.5, 0.0, -2.5, math.nan, True, False, None, [], ["user-1"], {}, {"id": 1}, "",
    " user-1", "user-1 ", "\t", 10**300,
]


def wrong_id_types(rng: random.Random) -> Record:
    doc = _doc(rng)
    key = doc["user_id"].encode()
    if rng.random() < 0.1:  # a valid event but for its type
        return key, _dumps(doc | {"type": rng.choice([1, [], {}, 2.5, True])})
    field = rng.choice(["user_id", "item_id"])
    if rng.random() < 0.1:
        del doc[field]
    else:
        doc[field] = rng.choice(BAD_IDS)
    return key, _dumps(doc)


def empty_values(rng: random.Random) -> Record:
    return rng.choice(USERS).encode(), rng.choice([None, b""])


def null_keys(rng: random.Random) -> Record:
    return None, _dumps(_doc(rng))


def wrong_keys(rng: random.Random) -> Record:
    doc = _doc(rng)
    key = rng.choice([u for u in USERS if u != doc["user_id"]] + ["", "USER-1", "user-1\x00"])
    return key.encode(), _dumps(doc)


def not_objects(rng: random.Random) -> Record:
    doc = rng.choice([[1, 2], "text", 42, None, True, [_doc(rng)], 1.5])
    return rng.choice(USERS).encode(), _dumps(doc)


def noise_text(rng: random.Random) -> Record:
    alphabet = string.printable + "{}[]\":,é日\u2028"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
    return rng.choice(USERS).encode(), text.encode()


# (generator, weight): the large ones are rare, so the test moves ~20 MB, not gigabytes.
GARBAGE: list[tuple[Callable[[random.Random], Record], int]] = [
    (random_bytes, 20), (truncated_json, 15), (deep_nesting, 2), (huge_strings, 1),
    (invalid_utf8, 10), (bad_timestamps, 15), (wrong_id_types, 15), (empty_values, 5),
    (null_keys, 5), (wrong_keys, 8), (not_objects, 4), (noise_text, 10),
]


def garbage(rng: random.Random, n: int) -> list[Record]:
    makers, weights = zip(*GARBAGE, strict=True)
    return [maker(rng) for maker in rng.choices(makers, weights, k=n)]


def interleave(rng: random.Random) -> list[Record]:
    """The garbage with each user's valid events spread through it, in their order."""
    records = garbage(rng, N_GARBAGE)
    valid = [event(user, rng.choice(ITEMS)) for _ in range(EVENTS_PER_USER) for user in USERS]
    total = len(records) + len(valid)
    slots = set(rng.sample(range(total), len(valid)))
    good, bad = iter(valid), iter(records)
    return [next(good) if i in slots else next(bad) for i in range(total)]


# -- the test ---------------------------------------------------------------------------

def test_garbage_goes_to_dead_letters_and_valid_events_are_served(
    kafka_bootstrap: str, tiny_checkpoint: Path, topics: dict[str, str],
) -> None:
    rng = random.Random(SEED)
    records = interleave(rng)
    record_ts = int(time.time() * 1000)
    p = producer(kafka_bootstrap)
    futures = [p.send(topics["events"], key=k, value=v, timestamp_ms=record_ts)
               for k, v in records]
    p.flush()
    p.close()
    # The oracle: the contract's own rules on each record as sent, keyed by its source.
    expected: dict[str, Event | Invalid] = {}
    sent: dict[str, bytes | None] = {}
    for (key, value), future in zip(records, futures, strict=True):
        meta = future.get(timeout=60)
        source = f"{meta.topic}/{meta.partition}/{meta.offset}"
        expected[source] = validate_event(key, value, record_ts, LIMITS)
        sent[source] = value
    invalid = {src: r for src, r in expected.items() if isinstance(r, Invalid)}
    served = {r.user_id for r in expected.values() if isinstance(r, Event)}
    assert len(invalid) == N_GARBAGE, "every garbage record must be garbage to the contract"
    assert served == set(USERS)
    assert len(Counter(r.reason for r in invalid.values())) >= 12  # nearly every reason

    worker = Worker(WorkerConfig(
        model_dir=tiny_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=32,
        max_wait_ms=20, k=5, device="cpu", limits=LIMITS))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
            raise

    thread = threading.Thread(target=run, daemon=True, name="garbage-worker")
    thread.start()
    try:
        latest: set[str] = set()

        def all_users_served(recs: list[Any]) -> bool:
            latest.update(r.key.decode() for r in recs)
            return (latest >= served and not worker.batcher) or not thread.is_alive()
        consume_until(kafka_bootstrap, topics["recs"], all_users_served, timeout_s=120)
        dlq = consume_until(kafka_bootstrap, topics["dlq"],
                            lambda rs: len(rs) >= len(invalid) or not thread.is_alive(),
                            timeout_s=120)
        assert thread.is_alive(), f"the worker stopped: {failure!r}"
        samples = scrape_until_dead_letters_counted(worker.metrics_port, len(invalid))
    finally:
        worker.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert failure == []

    assert latest >= served
    assert sum(end_offsets(kafka_bootstrap, topics["dlq"]).values()) == len(invalid)
    got = {}
    for r in dlq:
        headers = dict(r.headers)
        got[headers[HEADER_SOURCE].decode()] = (headers[HEADER_REASON].decode(), r.value)
        assert headers[HEADER_DETAIL]
    want = {src: (inv.reason, sent[src]) for src, inv in invalid.items()}
    assert got.keys() == want.keys()
    mismatched = [(src, got[src][0], want[src][0]) for src in got if got[src] != want[src]]
    assert mismatched == []

    reasons = Counter(inv.reason for inv in invalid.values())
    n_valid = len(expected) - len(invalid)
    assert metric_sum(samples, "streamrec_events_consumed_total") == len(expected)
    assert metric_sum(samples, "streamrec_events_valid_total") == n_valid
    assert metric_sum(samples, "streamrec_dead_letters_published_total") == len(invalid)
    for reason, n in reasons.items():
        assert samples[f'streamrec_events_invalid_total{{reason="{reason}"}}'] == n, reason
    assert metric_sum(samples, "streamrec_events_invalid_total") == len(invalid)
    assert committed_offsets(kafka_bootstrap, topics["group"], topics["events"]) == end_offsets(
        kafka_bootstrap, topics["events"])


def scrape_until_dead_letters_counted(port: int, n: int, timeout_s: float = 30.0) -> dict:
    """/metrics once the worker has counted `n` acknowledged dead letters.

    The records are readable on the topic a moment before the worker has processed
    their acknowledgements, so one scrape right after reading them could come early.
    """
    deadline = time.monotonic() + timeout_s
    samples = scrape(port)
    while (metric_sum(samples, "streamrec_dead_letters_published_total") < n
           and time.monotonic() < deadline):
        time.sleep(0.2)
        samples = scrape(port)
    return samples
