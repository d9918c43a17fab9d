"""Gradient accumulation under a per-rank micro-batch cap: the same update as the whole batch."""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist import sharding
from fe_dist.errors import ConfigError
from fe_dist.schedule import Scheduler, build_plan
from test_errors import data, estimator, tiny


def test_micro_batches_are_as_many_on_every_rank():
    # The rank with the largest share decides the count; every rank splits into that many,
    # so SyncBatchNormalization's collectives pair up (33 on 2 ranks, cap 16: shares 17 and
    # 16, each in 2 parts; before, [16, 1] and [16]).
    assert sharding.micro_batch_count(33, 2, 16) == 2
    assert [sharding.micro_batch_sizes(s, 2) for s in (17, 16)] == [[9, 8], [8, 8]]
    assert sharding.micro_batch_count(33, 1, 8) == 5
    assert sharding.micro_batch_sizes(33, 5) == [7, 7, 7, 6, 6]
    assert sharding.micro_batch_count(32, 1, 8) == 4
    assert sharding.micro_batch_count(5, 1, 8) == 1
    assert sharding.micro_batch_count(5, 1, None) == 1


def test_a_cap_that_leaves_a_rank_an_empty_micro_batch_is_refused():
    # 3 on 2 ranks with a cap of 1: shares 2 and 1, so 2 micro-batches each; rank 1 has one
    # sample for two.
    est = estimator(batch_size=3)
    with pytest.raises(ConfigError, match="max_rank_batch=1 splits the per-rank shares of the "
                                          r"global batch 3 on 2 ranks \(\[1, 2\]\)"):
        build_plan(est.pipeline, est.network, 1, 2, 0, max_rank_batch=1)


def _run(cap, batch, epochs=2):
    model = fe.build(tiny(), model_name="m", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(0.5))
    keras.utils.set_random_seed(3)
    model.set_weights([np.random.default_rng(i).normal(size=w.shape).astype("float32") * 0.1
                       for i, w in enumerate(model.get_weights())])
    est = estimator(batch_size=batch, model=model, epochs=epochs, d=data(n=99))
    est.max_rank_batch = cap
    return est, est.fit(), model.get_weights()


def test_accumulated_update_equals_the_whole_batch_update():
    batches = Scheduler({0: 33, 1: 16})
    _, plain, w_plain = _run(None, batches)
    est, accum, w_accum = _run(8, batches)
    for a, b in zip(w_plain, w_accum):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # k recomputed at the schedule change: 33 -> 7+7+7+6+6, 16 -> 8+8.
    assert [r.micro_batches for r in accum.records] == [5, 2]
    assert [r.micro_batches for r in plain.records] == [1, 1]
    assert [r.steps for r in accum.records] == [r.steps for r in plain.records] == [3, 6]
    for ra, rp in zip(accum.records, plain.records):
        assert ra.train_loss["ce"] == pytest.approx(rp.train_loss["ce"], rel=1e-5)
        # One allreduce of the model's gradients per optimizer step, not per micro-batch.
        assert ra.allreduced_tensors_per_step == rp.allreduced_tensors_per_step == 2
    assert "in 5 micro-batches" in accum.records[0].log_line()
    # Micro-batches have an unknown batch axis, so both phases share one accumulate trace;
    # the apply step has no input and one trace.
    kinds = sorted(k[0] for k in est.network.trace_counts)
    assert kinds == ["accumulate", "apply"]
    assert all(c == 1 for c in est.network.trace_counts.values())


def test_bad_cap():
    with pytest.raises(ConfigError, match="max_rank_batch must be a positive int"):
        _run(0, 16)
