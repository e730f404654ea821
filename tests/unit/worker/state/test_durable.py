"""DurableHistories read from other threads: the /metrics server counts users."""

from __future__ import annotations

import sys
import threading

from streamrec.encoder.vocab import ItemVocab
from streamrec.kafka_io.security import KafkaSecurity
from streamrec.worker.state.durable import DurableHistories


def test_users_are_counted_while_partitions_come_and_go() -> None:
    # The metrics server's thread calls num_users while the poll loop creates stores
    # (an assignment) and drops them (a revocation): the count must never fail.
    state = DurableHistories(4, ItemVocab(["a"]), bootstrap="unused:9092", group_id="g",
                             security=KafkaSecurity())
    errors: list[BaseException] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            try:
                state.num_users()
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                return

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    reader = threading.Thread(target=count)
    reader.start()
    try:
        for _ in range(100):
            for partition in range(64):
                state.store(partition)
            for partition in range(64):
                state.drop(partition)
            if errors:
                break
    finally:
        done.set()
        reader.join()
        sys.setswitchinterval(switch)
    assert errors == []
