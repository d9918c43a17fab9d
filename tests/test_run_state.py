"""Run state (fe_dist/run_state.py): what a rank must hold to continue a run, put back the same
way by an elastic rollback, a checkpoint resume and the start-state broadcast.

The rollback cases emulate Horovod's elastic loop on one process: `ctx.run_elastic` is replaced by
the loop `HorovodContext` runs (sync, snapshot; on a failure restore the snapshot, sync again and
train on), with one failure injected. A real multi-rank failure cannot be placed at a chosen
micro-batch or after a chosen trace decision (a killed peer surfaces wherever the survivor's next
collective is); tests/test_elastic.py runs the real ones. The resume of a stopped run on 2 ranks
is in tests/test_traces.py (tests/programs/traces.py).
"""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.trace.adapt import EarlyStopping


class InjectedFailure(Exception):
    """Stands for the HorovodInternalError of a lost rank."""


def _elastic_loop(failures):
    """A `Context.run_elastic` that recovers from ``InjectedFailure`` as Horovod's elastic loop
    does (fe_dist.distributed.horovod._ElasticState): the snapshot is taken after each sync and
    at each commit; a failure restores it, then sync and train run again."""
    def run_elastic(train, sync, snapshot, restore):
        saved = [None]

        def commit():
            saved[0] = snapshot()

        while True:
            sync()
            commit()
            try:
                train(commit)
                return
            except InjectedFailure:
                failures.append("recovered")
                restore(saved[0])

    return run_elastic


class FailingStream:
    """A train dataset that raises InjectedFailure before yielding element ``at`` (once)."""

    def __init__(self, ds, at, armed):
        self.ds, self.at, self.armed, self.element_spec = ds, at, armed, ds.element_spec

    def __iter__(self):
        for i, batch in enumerate(self.ds):
            if i == self.at and self.armed[0]:
                self.armed[0] = False
                raise InjectedFailure(f"lost a rank before micro-batch {i}")
            yield batch


def _estimator(epochs=3, traces=None, max_rank_batch=8):
    rng = np.random.default_rng(3)
    data = {"train": {"x": rng.random((64, 6), dtype=np.float32), "y": rng.integers(0, 3, 64)},
            "eval": {"x": rng.random((24, 6), dtype=np.float32), "y": rng.integers(0, 3, 24)}}
    keras.utils.set_random_seed(2)
    model = fe.build(lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)]),
                     model_name="m", optimizer=lambda: keras.optimizers.Adam(0.05),
                     loss_name="ce")
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce",
                                                        from_logits=True)])
    return fe.Estimator(pipeline=fe.Pipeline(data=data, batch_size=16), network=network,
                        epochs=epochs, verbose=False, max_rank_batch=max_rank_batch,
                        traces=traces)


def _weights(est):
    return [w.copy() for w in est.network.models["m"].get_weights()]


@pytest.fixture
def elastic(monkeypatch):
    """Installs the emulated elastic loop on this process's context; the recoveries it made."""
    failures = []
    ctx = fe.distributed.get_context()
    monkeypatch.setattr(ctx, "run_elastic", _elastic_loop(failures))
    return failures


def test_a_rollback_drops_the_gradient_accumulated_before_the_failure(elastic):
    """Batch 16 in micro-batches of 8: the failure comes after micro-batch 2 of epoch 1 was
    accumulated and before its step was applied. The redone epoch 1 must start from zero
    accumulators: the run equals the uninterrupted one (same batches, same order)."""
    reference = _estimator()
    want = reference.fit()
    est = _estimator()
    armed = [True]
    get_train_dataset = est.pipeline.get_train_dataset

    def failing_train_dataset(epoch, *args, **kwargs):
        ds = get_train_dataset(epoch, *args, **kwargs)
        return FailingStream(ds, 3, armed) if epoch == 1 else ds

    est.pipeline.get_train_dataset = failing_train_dataset
    got = est.fit()
    assert elastic == ["recovered"]  # the reference run (same loop) had no failure
    assert want.records[0].micro_batches == 2
    assert [r.epoch for r in got.records] == [0, 1, 2]
    for w, w0 in zip(_weights(est), _weights(reference)):
        np.testing.assert_allclose(w, w0, rtol=1e-6, atol=1e-7)
    assert [r.train_loss["ce"] for r in got.records] == pytest.approx(
        [r.train_loss["ce"] for r in want.records], rel=1e-6)


def test_a_failure_after_early_stopping_decided_redoes_the_epoch_and_stops_after_it(elastic):
    """EarlyStopping (a baseline never reached, patience 2) decides to stop after epoch 1; the
    failure comes after that decision (in the on_epoch_end callback of epoch 1). The rollback
    goes back to epoch 0's commit, so epoch 1 is trained again and the run stops after it, as
    the uninterrupted run does; it must not end one epoch short."""
    def stopper():
        return [EarlyStopping(monitor="ce", baseline=-1.0, patience=2)]

    reference = _estimator(epochs=5, traces=stopper())
    want = reference.fit()
    assert [r.epoch for r in want.records] == [0, 1] and want.records[-1].stopped_training
    est = _estimator(epochs=5, traces=stopper())
    armed = [True]

    def on_epoch_end(record):
        if record.stopped_training and armed[0]:
            armed[0] = False
            raise InjectedFailure("lost a rank after the stop decision")

    est.on_epoch_end = on_epoch_end
    got = est.fit()
    assert elastic == ["recovered"]
    assert [r.epoch for r in got.records] == [0, 1] and got.records[-1].stopped_training
    assert est.traces.all[0].wait == 2  # the rolled-back trace state counted epoch 1 once
    for w, w0 in zip(_weights(est), _weights(reference)):
        np.testing.assert_allclose(w, w0, rtol=1e-6, atol=1e-7)
