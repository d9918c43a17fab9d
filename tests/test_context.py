"""The context's gradient allreduce, on the local twin (one process)."""

import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist.errors import ConfigError


@pytest.mark.parametrize("mode,names", [("grouped", ["g"]), ("per_tensor", ["g.0", "g.1"])])
def test_allreduce_modes_issue_one_collective_per_group_or_per_tensor(monkeypatch, mode, names):
    ctx = fe.distributed.get_context()
    calls = []
    reduce = ctx._allreduce_sum
    monkeypatch.setattr(ctx, "_allreduce_sum",
                        lambda tensors, name: calls.append(name) or reduce(tensors, name))
    variables = [tf.Variable(tf.ones([3])), tf.Variable(tf.ones([2, 2]))]
    out = ctx.allreduce_gradients([tf.fill([3], 2.0), None], variables, name="g", mode=mode)
    assert calls == names
    assert out[0].numpy().tolist() == [2.0] * 3 and out[1].numpy().sum() == 0.0  # None -> zeros


def test_unknown_allreduce_mode_names_the_choices():
    with pytest.raises(ConfigError, match="allreduce must be one of.*per_tensor.*'ring'"):
        fe.Network(ops=[], allreduce="ring")
