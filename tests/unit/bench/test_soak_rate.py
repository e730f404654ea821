"""How `bench soak` finds its rate: the histories a probe's worker starts from are the
ones the soak's cycle leaves, and the rate is half of the maximum live load found."""

from __future__ import annotations

import numpy as np

from streamrec.bench.capacity import Probe
from streamrec.bench.contenders import Stream
from streamrec.bench.soak_rate import RateFinding, cycled_histories


def stream(users: list[str], items: list[str]) -> Stream:
    return Stream(users, items, np.arange(len(users), dtype=np.int64), "test")


def test_histories_are_the_users_items_sent_round_and_round() -> None:
    s = stream(["a", "b", "a", "c", "b", "a"], ["1", "2", "3", "4", "5", "6"])
    assert cycled_histories(s, len(s), 5) == {
        "a": ["3", "6", "1", "3", "6"],  # ... 1 3 6 | 1 3 6: the cycle's last item last
        "b": ["5", "2", "5", "2", "5"],
        "c": ["4", "4", "4", "4", "4"],
    }


def test_only_the_cycle_counts_and_a_long_history_keeps_its_newest_items() -> None:
    s = stream(["a"] * 7, [str(n) for n in range(7)])
    assert cycled_histories(s, 6, 4) == {"a": ["2", "3", "4", "5"]}  # event 6 is not sent


def test_the_rate_is_the_load_of_the_maximum_live_load_else_of_the_backlog() -> None:
    probes = [Probe(4000, 30, True), Probe(5000, 40, True), Probe(6250, 900, False),
              Probe(5590, 45, True)]
    found = RateFinding(backlog=9000, live_max=5590, probes=probes, load=0.5, probe_s=20,
                        max_len=50)
    assert found.rate == 2795
    text = found.sentence(100_000, 60_000)
    assert "probes: 4,000 kept up (30 ms), 5,000 kept up (40 ms), 6,250 fell behind (900 ms)" \
        ", 5,590 kept up (45 ms)): 5,590 events/s" in text
    none = RateFinding(backlog=9000, live_max=0.0, probes=probes[2:3], load=0.5, probe_s=20,
                       max_len=50)
    assert none.rate == 4500
    assert "none (no probe kept up), so the backlog's throughput instead" in none.sentence(1, 1)
