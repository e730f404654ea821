"""The kafka-python adapter asks again for a rejoin that kafka-python 3.0.12 would leave
unfinished for good (the group leader's metadata rejoin answered after `poll` returned).

The real case, a worker whose group offsets were rewound, is
tests/integration/test_stuck_rejoin.py; here the adapter's rule is checked against a
stand-in for kafka-python's coordinator, in each of its states after a `poll`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from streamrec.kafka_io.kafka_python.consumer import KafkaPythonConsumer


@dataclass
class FakeCoordinator:
    """The coordinator attributes the adapter reads, and the rejoins it asks for."""

    rejoining: bool
    needs: bool
    group_id: str = "g"
    requested: list[bool] = field(default_factory=list)

    def need_rejoin(self) -> bool:
        return self.needs

    def request_rejoin(self) -> None:
        self.requested.append(True)


class FakeKafkaConsumer:
    def __init__(self, coordinator: FakeCoordinator) -> None:
        self._coordinator = coordinator

    def poll(self, timeout_ms: int) -> dict:
        return {}


def polled_with(coordinator: FakeCoordinator) -> FakeCoordinator:
    consumer = KafkaPythonConsumer.__new__(KafkaPythonConsumer)
    consumer._c = FakeKafkaConsumer(coordinator)  # type: ignore[assignment]
    assert consumer.poll(0.002) == {}
    return coordinator


def test_a_join_in_progress_that_poll_no_longer_drives_is_asked_for_again() -> None:
    # The leader's own assignment made need_rejoin() false before anyone took the answer.
    assert polled_with(FakeCoordinator(rejoining=True, needs=False)).requested == [True]


@pytest.mark.parametrize(("rejoining", "needs"), [
    (False, False),  # joined and stable: nothing to do
    (False, True),  # a rejoin the next poll starts
    (True, True),  # a rejoin in progress the next poll goes on driving
])
def test_other_states_are_left_to_kafka_python(rejoining: bool, needs: bool) -> None:
    assert polled_with(FakeCoordinator(rejoining=rejoining, needs=needs)).requested == []
