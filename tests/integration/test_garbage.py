"""Failure test 4: 10,000 garbage records between valid events; the worker never falters.

Random bytes, truncated and deeply nested JSON, huge strings around the record and id
limits, invalid UTF-8, impossible timestamps and unit mistakes, ids of the wrong type,
empty values, null keys and keys that are not the user id are produced between a few
hundred valid events (some of them with 1997 event times, which are valid). Each
generator states, for every record it makes, the dead-letter reason the contract
(docs/CONTRACTS.md, "Event") gives it, and for unit mistakes what the detail must
say: the oracle is written down here, independently of `validate_event`, so a
validation bug shows up as a mismatch. Every such record must be on the dead-letter
topic with that reason (matched by the `streamrec.source` header), every user with a
valid event must get a recommendation, the metrics must count exactly that, and the
worker thread must run through it all without an exception and then stop cleanly.

The garbage is drawn from a seeded `random.Random` by one small generator per kind,
so a failure reproduces exactly; the property tests of `validate_event` (hypothesis,
in tests/unit/worker/test_validate.py) explore the same space more widely, hermetically.
"""

from __future__ import annotations

import json
import math
import random
import string
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from streamrec.worker.app import Worker
from streamrec.worker.config import WorkerConfig
from streamrec.worker.publish import HEADER_DETAIL, HEADER_REASON, HEADER_SOURCE
from streamrec.worker.validate import Limits
from tests.integration.helpers import (
    committed_offsets,
    consume_until,
    end_offsets,
    event,
    metric_sum,
    producer,
    running,
    scrape,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_clients]

SEED = 4
N_GARBAGE = 10_000
USERS = [f"user-{n}" for n in range(50)]
EVENTS_PER_USER = 6
ITEMS = [f"i{n}" for n in range(1, 41)]  # the tiny_checkpoint vocabulary
LIMITS = Limits()  # the worker's defaults: 64 KiB records, 256-char ids
MAX_BYTES, MAX_ID = 64 * 1024, 256  # the same limits, as the contract states them
MOVIELENS_1997 = 881_250_949_000  # a valid historical event time (epoch ms)
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


class Garbage(NamedTuple):
    """One bad record and what the contract says about it."""

    key: bytes | None
    value: bytes | None
    reason: str  # the dead-letter reason it must get
    detail: str = ""  # a phrase the dead letter's detail must contain ("" = any)


# -- one generator per kind of garbage -------------------------------------------------

def _doc(rng: random.Random, **fields: Any) -> dict[str, Any]:
    user = rng.choice(USERS)
    return {"user_id": user, "item_id": rng.choice(ITEMS)} | fields


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


def random_bytes(rng: random.Random) -> Garbage:
    raw = bytearray(rng.randbytes(rng.randint(1, 300)))
    raw.insert(rng.randint(0, len(raw)), 0xFF)  # 0xFF never occurs in UTF-8
    return Garbage(rng.choice(USERS).encode(), bytes(raw), "bad_encoding")


def truncated_json(rng: random.Random) -> Garbage:
    doc = _doc(rng, ts=1_700_000_000_000, type="click")
    value = _dumps(doc)
    # A proper prefix of an object lacks its closing brace: never JSON.
    return Garbage(doc["user_id"].encode(), value[: rng.randint(1, len(value) - 1)], "not_json")


def deep_nesting(rng: random.Random) -> Garbage:
    depth = rng.choice([200, 500, 20_000, 30_000])
    doc = _doc(rng)
    nest = rng.choice(["[", '{"a":'])
    close = "]" if nest == "[" else "}"
    closed = rng.random() < 0.7
    body = nest * depth + "1" + close * depth if closed else nest * depth
    # Nested inside the item id: the one place where nesting cannot be ignored.
    value = _dumps(doc)[:-1] + b', "item_id": ' + body.encode() + b"}"
    if len(value) > MAX_BYTES:
        reason = "oversize"
    elif not closed or depth >= 20_000:  # unterminated, or deeper than Python parses
        reason = "not_json"
    else:
        reason = "bad_item_id"  # parsed: the item id is a list or an object
    return Garbage(doc["user_id"].encode(), value, reason)


def huge_strings(rng: random.Random) -> Garbage:
    user = rng.choice(USERS)
    kind = rng.randrange(5)
    if kind == 0:  # just under / over the record limit, otherwise a valid event
        size = MAX_BYTES + rng.randint(-40, 40)
        doc = _doc(rng, user_id=user, pad="")
        doc["pad"] = "x" * max(0, size - len(_dumps(doc)))
        doc["ts"] = "late"  # within the limit it is still refused, for its ts
        value = _dumps(doc)
        if len(value) > MAX_BYTES:
            return Garbage(user.encode(), value, "oversize")
        return Garbage(user.encode(), value, "bad_ts", "got str")
    if kind == 1:  # far over the limit: must be refused by length, not parsed
        value = b'{"user_id": "' + b"u" * rng.randint(100_000, 1 << 20) + b'"}'
        return Garbage(user.encode(), value, "oversize")
    if kind == 2:  # item ids just over the id limit
        n = MAX_ID + rng.choice([1, 2, 1000])
        return Garbage(user.encode(), _dumps(_doc(rng, user_id=user, item_id="i" * n)),
                       "bad_item_id")
    if kind == 3:
        long_user = "u" * (MAX_ID + rng.randint(1, 100))
        return Garbage(long_user.encode(), _dumps(_doc(rng, user_id=long_user)), "bad_user_id")
    return Garbage(b"k" * (4 * MAX_ID + rng.randint(1, 5000)), _dumps(_doc(rng)), "oversize",
                   "key of")


def invalid_utf8(rng: random.Random) -> Garbage:
    bad = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8\x88\x80\x80"])
    doc = _doc(rng)
    value = _dumps(doc)
    if rng.random() < 0.2:  # the key, not the value, is broken
        return Garbage(doc["user_id"].encode() + bad, value, "bad_encoding")
    at = value.index(b'"item_id": "') + len(b'"item_id": "')
    return Garbage(doc["user_id"].encode(), value[:at] + bad + value[at:], "bad_encoding")


# (ts, what the detail must say): every one is bad_ts.
BAD_TS: list[tuple[Any, str]] = [
    (math.nan, "got float"), (math.inf, "got float"), (-math.inf, "got float"),
    (1.7e12, "got float"), (1_700_000_000_000.5, "got float"),
    (-1, "negative"), (-(10**30), "negative"),
    (0, "looks like seconds"), (881_250_949, "looks like seconds: multiply by 1000"),
    (1_700_000_000, "looks like seconds: multiply by 1000"),
    (99_999_999_999, "looks like seconds: multiply by 1000"),  # 1973-03-03 in ms, minus 1
    (MOVIELENS_1997 * 1000, "looks like microseconds: divide by 1000"),
    (1_700_000_000_000_000, "looks like microseconds: divide by 1000"),
    (1_700_000_000_000_000_000, "looks like nanoseconds: divide by 1000000"),
    (NOW_MS + 3 * DAY_MS, "in the future"), (4_102_444_800_001, "in the future"),
    (10**30, "in the future"),
    ("1700000000000", "got str"), ("now", "got str"), (True, "got bool"),
    (False, "got bool"), ([1], "got list"), ({}, "got dict"), (None, "got NoneType"),
]


def bad_timestamps(rng: random.Random) -> Garbage:
    doc = _doc(rng)
    if rng.random() < 0.05:  # a number Python refuses to parse (> 4300 digits)
        value = _dumps(doc)[:-1] + b', "ts": ' + b"9" * rng.randint(4301, 9000) + b"}"
        return Garbage(doc["user_id"].encode(), value, "not_json")
    doc["ts"], detail = rng.choice(BAD_TS)
    return Garbage(doc["user_id"].encode(), _dumps(doc), "bad_ts", detail)


BAD_IDS: list[Any] = [
    1.5, 0.0, -2.5, math.nan, True, False, [], ["user-1"], {}, {"id": 1}, "",
    " user-1", "user-1 ", "\t", 10**300,
]


def wrong_id_types(rng: random.Random) -> Garbage:
    doc = _doc(rng)
    key = doc["user_id"].encode()
    if rng.random() < 0.1:  # a valid event but for its type
        return Garbage(key, _dumps(doc | {"type": rng.choice([1, [], {}, 2.5, True])}),
                       "bad_type")
    field = rng.choice(["user_id", "item_id"])
    what = field.removesuffix("_id")
    roll = rng.random()
    if roll < 0.1:
        del doc[field]
        return Garbage(key, _dumps(doc), f"missing_{what}_id")
    if roll < 0.2:
        doc[field] = None  # null is as good as absent
        return Garbage(key, _dumps(doc), f"missing_{what}_id")
    doc[field] = rng.choice(BAD_IDS)
    return Garbage(key, _dumps(doc), f"bad_{what}_id")


def empty_values(rng: random.Random) -> Garbage:
    return Garbage(rng.choice(USERS).encode(), rng.choice([None, b""]), "empty")


def null_keys(rng: random.Random) -> Garbage:
    return Garbage(None, _dumps(_doc(rng)), "missing_key")


def wrong_keys(rng: random.Random) -> Garbage:
    doc = _doc(rng)
    key = rng.choice([u for u in USERS if u != doc["user_id"]] + ["", "USER-1", "user-1\x00"])
    return Garbage(key.encode(), _dumps(doc), "key_mismatch")


def not_objects(rng: random.Random) -> Garbage:
    doc = rng.choice([[1, 2], "text", 42, None, True, [_doc(rng)], 1.5])
    return Garbage(rng.choice(USERS).encode(), _dumps(doc), "not_object")


def noise_text(rng: random.Random) -> Garbage:
    alphabet = string.printable + "{}[]\":,é日\u2028"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
    # Led by a character no JSON text starts with: noise, never accidentally JSON.
    return Garbage(rng.choice(USERS).encode(), (rng.choice("}]):,#~") + text).encode(),
                   "not_json")


# (generator, weight): the large ones are rare, so the test moves ~20 MB, not gigabytes.
GARBAGE: list[tuple[Callable[[random.Random], Garbage], int]] = [
    (random_bytes, 20), (truncated_json, 15), (deep_nesting, 2), (huge_strings, 1),
    (invalid_utf8, 10), (bad_timestamps, 15), (wrong_id_types, 15), (empty_values, 5),
    (null_keys, 5), (wrong_keys, 8), (not_objects, 4), (noise_text, 10),
]


def garbage(rng: random.Random, n: int) -> list[Garbage]:
    makers, weights = zip(*GARBAGE, strict=True)
    return [maker(rng) for maker in rng.choices(makers, weights, k=n)]


def valid_event(rng: random.Random, user: str, step: int) -> tuple[bytes, bytes]:
    """A valid event; every third one carries a 1997 event time, every fifth a type."""
    key, value = event(user, rng.choice(ITEMS), MOVIELENS_1997 + step if step % 3 == 0
                       else None)
    if step % 5 == 0:
        value = value[:-1] + b', "type": "view"}'
    return key, value


def interleave(rng: random.Random) -> list[Garbage | tuple[bytes, bytes]]:
    """The garbage with each user's valid events spread through it, in their order."""
    records = garbage(rng, N_GARBAGE)
    valid = [valid_event(rng, user, step) for step in range(EVENTS_PER_USER) for user in USERS]
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
    futures = [p.send(topics["events"], key=r[0], value=r[1], timestamp_ms=record_ts)
               for r in records]
    p.flush()
    p.close()
    # What each generator said about its record, keyed by where the record landed.
    invalid: dict[str, Garbage] = {}
    served: set[str] = set()
    for record, future in zip(records, futures, strict=True):
        meta = future.get(timeout=60)
        if isinstance(record, Garbage):
            invalid[f"{meta.topic}/{meta.partition}/{meta.offset}"] = record
        else:
            served.add(record[0].decode())
    n_valid = len(records) - len(invalid)
    assert len(invalid) == N_GARBAGE
    assert served == set(USERS)
    assert len(Counter(g.reason for g in invalid.values())) == 13  # every reason

    worker = Worker(WorkerConfig(
        model_dir=tiny_checkpoint, bootstrap=kafka_bootstrap, events_topic=topics["events"],
        recommendations_topic=topics["recs"], dead_letter_topic=topics["dlq"],
        group_id=topics["group"], metrics_port=0, metrics_host="127.0.0.1", max_batch=32,
        max_wait_ms=20, k=5, device="cpu", limits=LIMITS))
    with running(worker, "garbage-worker") as handle:
        latest: set[str] = set()

        def all_users_served(recs: list[Any]) -> bool:
            latest.update(r.key.decode() for r in recs)
            return (latest >= served and not worker.batcher) or not handle.alive
        consume_until(kafka_bootstrap, topics["recs"], all_users_served, timeout_s=120)
        dlq = consume_until(kafka_bootstrap, topics["dlq"],
                            lambda rs: len(rs) >= len(invalid) or not handle.alive,
                            timeout_s=120)
        assert handle.alive, f"the worker stopped: {handle.failure!r}"
        samples = scrape_until_dead_letters_counted(worker.metrics_port, len(invalid))

    assert latest >= served
    assert sum(end_offsets(kafka_bootstrap, topics["dlq"]).values()) == len(invalid)
    got = {}
    for r in dlq:
        headers = dict(r.headers)
        got[headers[HEADER_SOURCE].decode()] = (headers[HEADER_REASON].decode(), r.value,
                                                headers[HEADER_DETAIL].decode())
    assert got.keys() == invalid.keys()
    mismatched = [(src, got[src][0], g.reason, got[src][2][:120])
                  for src, g in invalid.items() if got[src][:2] != (g.reason, g.value)]
    assert mismatched == [], f"{len(mismatched)} records, e.g. {mismatched[:5]}"
    vague = [(src, got[src][2], g.detail) for src, g in invalid.items()
             if g.detail not in got[src][2]]
    assert vague == [], f"{len(vague)} details lack the expected phrase, e.g. {vague[:5]}"
    assert all(detail for _, _, detail in got.values())

    reasons = Counter(g.reason for g in invalid.values())
    assert metric_sum(samples, "streamrec_events_consumed_total") == len(records)
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
