"""Scheduler: value resolution, None handling, signature epochs, bad keys."""

import pytest

from fe_dist.errors import ConfigError
from fe_dist.schedule import Scheduler, get_current_items, get_signature_epochs


def test_value_holds_from_key_until_next_key():
    bs = Scheduler({0: 32, 2: 64, 5: 128})
    assert [bs.get_current_value(e) for e in range(8)] == [32, 32, 64, 64, 64, 128, 128, 128]


def test_none_before_first_key_and_none_values_switch_off():
    s = Scheduler({2: "a", 4: None, 6: "b"})
    assert [s.get_current_value(e) for e in range(8)] == [None, None, "a", "a", None, None,
                                                          "b", "b"]
    assert get_current_items([s, "fixed"], 1) == ["fixed"]
    assert get_current_items([s, "fixed"], 3) == ["a", "fixed"]
    assert get_current_items([s, "fixed"], 5) == ["fixed"]


def test_keys_are_sorted_whatever_the_dict_order():
    s = Scheduler({3: "c", 0: "a", 1: "b"})
    assert s.keys == [0, 1, 3]
    assert [s.get_current_value(e) for e in range(4)] == ["a", "b", "b", "c"]


def test_mode_filter():
    class FakeOp:
        def __init__(self, mode):
            self.mode = mode

    train_only, both, evals = FakeOp("train"), FakeOp(None), FakeOp(["eval"])
    assert get_current_items([train_only, both, evals], 0, "train") == [train_only, both]
    assert get_current_items([train_only, both, evals], 0, "eval") == [both, evals]


def test_signature_epochs():
    a = Scheduler({0: 1, 3: 2, 10: 3})
    b = Scheduler({1: "x", 3: "y"})
    assert get_signature_epochs([a, b, "fixed"], total_epochs=5) == [0, 1, 3]
    assert get_signature_epochs(["fixed"], total_epochs=5) == [0]
    assert get_signature_epochs([a], total_epochs=20) == [0, 3, 10]


@pytest.mark.parametrize("bad", [{-1: 3}, {1.5: 3}, {"0": 3}, {True: 3}, {}])
def test_bad_keys_raise(bad):
    with pytest.raises(ConfigError, match="Scheduler"):
        Scheduler(bad)


def test_all_none_values_raise():
    with pytest.raises(ConfigError, match="only None"):
        Scheduler({0: None, 3: None})


def test_not_a_dict_raises():
    with pytest.raises(ConfigError, match="dict"):
        Scheduler([32, 64])
