"""Leave-one-out split and the [B, L] left-padding helper."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.common.errors import ConfigError
from streamrec.encoder.data import Interactions
from streamrec.encoder.sequences import pad_histories
from streamrec.encoder.split import EvalCases, leave_one_out


def _data() -> Interactions:
    users = ["a"] * 5 + ["b"] * 2 + ["c"] * 3
    items = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1]
    return Interactions.from_pairs(users, items)


def test_last_is_test_second_to_last_is_validation_rest_is_train() -> None:
    split = leave_one_out(_data())
    assert split.skipped_users == 1  # "b" has 2 interactions
    np.testing.assert_array_equal(split.test.users, [0, 2])
    np.testing.assert_array_equal(split.test.targets, [5, 1])
    np.testing.assert_array_equal(split.validation.targets, [4, 9])
    assert [h.tolist() for h in split.test.histories] == [[1, 2, 3, 4], [8, 9]]
    assert [h.tolist() for h in split.validation.histories] == [[1, 2, 3], [8]]
    # every user trains; skipped users with their whole (short) sequence
    assert [t.tolist() for t in split.train] == [[1, 2, 3], [6, 7], [8]]
    assert [s.tolist() for s in split.test.seen] == [[1, 2, 3, 4, 5], [8, 9, 1]]
    np.testing.assert_array_equal(split.train_item_counts(), [0, 1, 1, 1, 0, 0, 1, 1, 1, 0])


def test_fit_validation_trains_all_but_the_test_item() -> None:
    split = leave_one_out(_data()).with_validation_trained()
    assert [t.tolist() for t in split.train] == [[1, 2, 3, 4], [6, 7], [8, 9]]
    np.testing.assert_array_equal(split.test.targets, [5, 1])  # still held out
    np.testing.assert_array_equal(split.train_item_counts(), [0, 1, 1, 1, 1, 0, 1, 1, 1, 1])


def test_split_is_views_not_copies() -> None:
    data = _data()
    split = leave_one_out(data)
    assert np.shares_memory(split.train[0], data.sequences[0])
    assert np.shares_memory(split.test.histories[0], data.sequences[0])


def test_min_interactions_threshold() -> None:
    split = leave_one_out(_data(), min_interactions=4)
    assert len(split.test) == 1
    assert split.skipped_users == 2
    assert split.train[2].tolist() == [8, 9, 1]
    with pytest.raises(ConfigError):
        leave_one_out(_data(), min_interactions=2)


def test_eval_cases_take_and_from_sequences() -> None:
    cases = EvalCases.from_sequences([np.array([1, 2, 3]), np.array([4, 5])])
    np.testing.assert_array_equal(cases.targets, [3, 5])
    sub = cases.take([1])
    assert sub.histories[0].tolist() == [4]
    assert sub.users.tolist() == [1]


def test_pad_histories_left_pads_and_keeps_most_recent() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([7]), np.array([], dtype=np.int64)]
    out = pad_histories(seqs, 3)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[2, 3, 4], [0, 0, 7], [0, 0, 0]])
    np.testing.assert_array_equal(pad_histories(seqs), [[1, 2, 3, 4], [0, 0, 0, 7], [0, 0, 0, 0]])
    assert pad_histories([], 5).shape == (0, 5)
