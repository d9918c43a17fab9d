"""Per-mode schedules: EpochScheduler, batch sizes per mode, the test split and Estimator.test(),
op modes ("test", "!train"), and metric names that do not depend on the number of loss ops.
The same test() on 2 ranks (uneven shares) is checked in tests/test_multirank.py."""

import json

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import EpochScheduler, Scheduler
from test_errors import data, estimator, tiny
from test_estimator import _numpy_eval


def _splits(n_eval=23, n_test=29):
    rng = np.random.default_rng(3)
    split = lambda n: {"x": rng.random((n, 8, 8, 1), dtype=np.float32),  # noqa: E731
                       "y": rng.integers(0, 10, n)}
    return {"train": data()["train"], "eval": split(n_eval), "test": split(n_test)}


def test_epoch_scheduler_is_a_zero_based_scheduler():
    s = EpochScheduler({0: 32, 2: 64})
    assert [s.get_current_value(e) for e in range(4)] == [32, 32, 64, 64]
    assert repr(s) == "EpochScheduler({0: 32, 2: 64})"
    assert "counts from 1" in EpochScheduler.__doc__  # the FastEstimator 1.x difference
    est = estimator(batch_size=EpochScheduler({0: 16, 1: 32}), epochs=2)
    assert [r.global_batch for r in est.fit().records] == [16, 32]
    # A FastEstimator 1.x program's first key is 1: epoch 0 would run without the value.
    with pytest.warns(UserWarning, match="starts at epoch 1: fe_dist counts epochs from 0"):
        EpochScheduler({1: 16, 3: 32})
    with pytest.warns(UserWarning), pytest.raises(ConfigError,
                                                 match="FastEstimator 1.x counts from 1"):
        estimator(batch_size=EpochScheduler({1: 16}), epochs=2).fit()


def _eval_batch_sizes(est, mode="eval"):
    """The batch sizes each eval/test run of ``est`` reads, as the compiled step receives them."""
    seen = []
    get_step = est.network.get_eval_step

    def recording(epoch, spec, step_mode="eval", keep=()):
        step = get_step(epoch, spec, step_mode, keep)
        compiled = step._step

        class Recorder:
            def __call__(self, batch):
                if step_mode == mode:
                    seen.append(int(batch["x"].shape[0]))
                return compiled(batch)

            def get_concrete_function(self, *specs):  # preflight compiles it
                return compiled.get_concrete_function(*specs)

        step._step = Recorder()
        return step

    est.network.get_eval_step = recording
    return seen


def test_batch_size_per_mode_and_scheduled():
    batch = Scheduler({0: {"train": 16, "eval": 5}, 1: {"train": 32}})
    est = estimator(batch_size=batch, epochs=2, d=_splits())
    seen = _eval_batch_sizes(est)
    summary = est.fit()
    assert [r.global_batch for r in summary.records] == [16, 32]
    assert [e.eval_batch for e in est.plan.epochs] == [5, 32]  # a mode left out: train's
    assert summary.signature_epochs == [0, 1]
    assert seen == [5, 5, 5, 5, 3, 23]


def test_dict_of_schedulers_changes_the_signature_epochs():
    est = estimator(batch_size={"train": 16, "eval": Scheduler({0: 4, 2: 8})}, epochs=3,
                    d=_splits())
    est.fit()
    assert [e.eval_batch for e in est.plan.epochs] == [4, 4, 8]
    assert est.plan.signature_epochs == [0, 2]


@pytest.mark.parametrize("batch,words", [
    ({"eval": 8}, "has no 'train' entry"),
    ({"train": 8, "valid": 4}, "has modes ['valid']"),
    ({"train": 8, "eval": 0}, "Epoch 0: the eval batch size 0 is not a positive int"),
    ({"train": 8, "test": 2.5}, "Epoch 1: the test batch size 2.5 is not a positive int"),
])
def test_bad_per_mode_batch_sizes_fail_before_training(batch, words):
    est = estimator(batch_size=batch, epochs=2, d=_splits())
    trained = []
    est.on_epoch_end = trained.append
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        est.fit()
    assert trained == []


def test_test_covers_the_whole_test_split_with_the_last_schedule():
    d = _splits()
    est = estimator(batch_size={"train": 16, "test": 8}, epochs=2, d=d)
    seen = _eval_batch_sizes(est, "test")
    est.fit()
    metrics = est.test()
    assert seen == [8, 8, 8, 5]
    ce, correct = _numpy_eval(est.network.models["m"].get_weights(), d["test"]["x"],
                              d["test"]["y"])
    assert 0 < correct < 29
    assert metrics["ce"] == pytest.approx(ce, rel=1e-5)
    assert metrics["ce_accuracy"] == pytest.approx(correct / 29, abs=1e-9)


def test_test_alone_agrees_and_checks_first():
    est = estimator(d=_splits())
    metrics = est.test()  # no fit: plan, checks and start state first
    assert set(metrics) == {"ce", "ce_accuracy"} and est.plan is not None


def test_ops_of_mode_test_and_not_train():
    """An op with mode="test" runs only in test; "!train" (FastEstimator's) in eval and test."""
    d = _splits()
    model = fe.build(tiny(), model_name="m", loss_name="ce")
    ops = [Scale(inputs="x", scalar=0.0, outputs="x", mode="test"),
           Scale(inputs="x", scalar=1.0, outputs="seen", mode="!train"),
           ModelOp(inputs="x", model=model, outputs="p"),
           SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]
    est = estimator(net_ops=ops, model=model, epochs=1, d=d)
    evaluated = est.fit().records[0].eval_metrics
    tested = est.test()
    weights = model.get_weights()
    assert evaluated["ce"] == pytest.approx(_numpy_eval(weights, d["eval"]["x"],
                                                        d["eval"]["y"])[0], rel=1e-5)
    assert tested["ce"] == pytest.approx(_numpy_eval(weights, 0 * d["test"]["x"],
                                                     d["test"]["y"])[0], rel=1e-5)
    assert est.network.get_ops(0, "train")[0].outputs == ("p",)
    with pytest.raises(ConfigError, match="mode 'valid' is not one of"):
        Scale(inputs="x", scalar=1.0, outputs="x", mode="valid")


def test_test_without_a_test_split_or_with_an_empty_one():
    with pytest.raises(ConfigError, match="needs a 'test' split"):
        estimator().test()
    empty = {**data(), "test": {"x": np.zeros((0, 8, 8, 1), np.float32),
                                "y": np.zeros(0, np.int64)}}
    with pytest.raises(ConfigError, match=r"data\['test'\] has no samples. Give the split"):
        estimator(d=empty)


def test_metric_names_do_not_depend_on_the_number_of_loss_ops():
    d = _splits()
    one = estimator(epochs=1, d=d).fit().records[0].eval_metrics
    a = fe.build(tiny(), model_name="a", loss_name="ce")
    b = fe.build(tiny(), model_name="b", loss_name="ce_b")
    ops = [ModelOp(inputs="x", model=a, outputs="p"), ModelOp(inputs="x", model=b, outputs="q"),
           SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce"),
           SparseCategoricalCrossentropy(inputs=("y", "q"), outputs="ce_b")]
    two = estimator(net_ops=ops, model=a, epochs=1, d=d).fit().records[0].eval_metrics
    assert set(one) == {"ce", "ce_accuracy"}
    assert set(two) == {"ce", "ce_accuracy", "ce_b", "ce_b_accuracy"}
    keras.backend.clear_session()


def test_test_metrics_are_written_to_the_history_dir(tmp_path):
    est = estimator(batch_size={"train": 16, "test": 8}, epochs=1, d=_splits())
    est.history_dir = tmp_path
    est.fit()
    metrics = est.test()
    written = json.loads((tmp_path / "test.json").read_text())
    assert written == {"epoch": 0, "samples": 29, "metrics": metrics}


def test_one_op_or_one_trace_alone_is_a_list_of_one():
    """FastEstimator accepts ops=Minmax(...) and traces=Accuracy(...) without a list."""
    from fe_dist.trace.metric import Accuracy
    model = fe.build(tiny(), model_name="m", loss_name="ce")
    pipeline = fe.Pipeline(data=_splits(), batch_size=16,
                           ops=Scale(inputs="x", scalar=1.0, outputs="x"))
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=1, verbose=False,
                       traces=Accuracy(true_key="y", pred_key="p"))
    metrics = est.fit().records[0].eval_metrics
    assert metrics["accuracy"] == metrics["ce_accuracy"]
    assert len(pipeline.ops) == 1
