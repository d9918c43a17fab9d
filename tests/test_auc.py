"""AUC: the exact ROC AUC over the whole set, checked against a brute-force pairwise count
(ties counting half); gathered over ranks. The 2-rank launch is in test_traces.py."""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.trace import Data, System
from fe_dist.trace.metric import AUC, AUCScore, roc_auc
from fe_dist.trace.runner import Traces


def pairwise_auc(positive, score):
    """The fraction of (positive, negative) pairs whose positive scores higher; ties half."""
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def brute_force_auc(labels, scores, average="macro"):
    """Binary (1-D scores of class 1) or one-vs-rest averaged over classes, pair by pair."""
    if scores.ndim == 1:
        return pairwise_auc(labels == 1, scores)
    aucs = np.array([pairwise_auc(labels == c, scores[:, c]) for c in range(scores.shape[1])])
    if average == "weighted":
        return float((aucs * np.bincount(labels)).sum() / labels.size)
    return float(aucs.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auc_equals_the_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) + 0.3 * labels, 1).astype(np.float32)  # many ties
    want = brute_force_auc(labels, score)
    assert 0.5 < want < 1
    # As one probability column, a (n, 1) sigmoid output or column 1 of a softmax pair.
    assert roc_auc(labels, score) == pytest.approx(want, abs=1e-15)
    assert roc_auc(labels[:, None], score[:, None]) == pytest.approx(want, abs=1e-15)
    pair = np.stack([1 - score, score], axis=1)
    assert roc_auc(np.eye(2)[labels], pair) == pytest.approx(want, abs=1e-15)  # one-hot labels
    # Every score tied: 0.5; perfectly separated: 1.
    assert roc_auc(labels, np.zeros(300)) == 0.5
    assert roc_auc(labels, labels.astype(float)) == 1.0


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_multi_class_auc_is_the_one_vs_rest_average(average):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    scores = rng.random((400, 5))
    scores[np.arange(400), labels] += 0.4 * rng.random(400)
    scores = np.round(scores / scores.sum(axis=1, keepdims=True), 2)  # probabilities, tied
    want = brute_force_auc(labels, scores, average)
    assert roc_auc(labels, scores, average=average) == pytest.approx(want, abs=1e-15)
    # Order does not matter (ranks concatenate their shards in another order).
    order = rng.permutation(400)
    assert roc_auc(labels[order], scores[order], average) == roc_auc(labels, scores, average)


def test_undefined_auc_raises():
    scores = np.random.default_rng(0).random((6, 3))
    with pytest.raises(ValueError, match=r"class 2 \(of 3\) has no sample, so its one-vs-rest "
                                         r"ROC AUC is undefined \(every class must occur\)"):
        roc_auc([0, 1, 0, 1, 0, 1], scores)
    with pytest.raises(ValueError, match="only class 1 occurs in the labels"):
        roc_auc([1, 1, 1], [0.2, 0.4, 0.9])
    with pytest.raises(ValueError, match="label 3 is outside the prediction's 3 classes"):
        roc_auc([0, 1, 2, 3, 0, 1], scores)
    with pytest.raises(ValueError, match="NaN or infinite"):
        roc_auc([0, 1], [0.5, np.nan])
    with pytest.raises(ConfigError, match="average must be 'macro' or 'weighted'"):
        AUC("y", "p", average="micro")
    with pytest.raises(ConfigError, match="multi_class must be 'ovr'"):
        AUCScore("y", "p", multi_class="ovo")


class _TwoRanks:
    """A context whose rank 1 holds ``other``'s (labels, scores) in the gather of on_epoch_end
    and agrees with whatever rank 0 reports."""

    backend, rank, size, is_chief = "fake", 0, 2, True

    def __init__(self, other):
        self.other = other

    def allgather_object(self, obj, name):
        return [obj, ("value", self.other) if obj[0] == "value" else obj]

    def progress(self, where):
        pass


def test_auc_gathers_every_ranks_scores():
    rng = np.random.default_rng(4)
    labels, scores = rng.integers(0, 4, 61), np.round(rng.random((61, 4)), 1)
    trace = AUC("y", "p")
    traces, system = Traces([trace]), System(_TwoRanks((labels[40:], scores[40:])))
    traces.attach(system)
    system.mode = "eval"
    for lo, hi in ((0, 16), (16, 32), (32, 40)):  # rank 0's batches: samples 0-39
        traces.run_batch_hook("on_batch_end", [trace], Data({"y": labels[lo:hi],
                                                             "p": scores[lo:hi]}))
    logged = traces.run_epoch_hook("on_epoch_end", [trace], Data(), system)
    assert logged["auc"] == pytest.approx(brute_force_auc(labels, scores), abs=1e-15)
    # Rank 1 alone holds class 3: rank 0's shard has no AUC of its own, the whole set has.
    labels[labels == 3] = 0
    labels[45] = 3
    traces.run_batch_hook("on_batch_end", [trace], Data({"y": labels[:40], "p": scores[:40]}))
    system._ctx.other = (labels[40:], scores[40:])
    logged = traces.run_epoch_hook("on_epoch_end", [trace], Data(), system)
    assert logged["auc"] == pytest.approx(brute_force_auc(labels, scores), abs=1e-15)


def _estimator(eval_classes, epochs=1):
    rng = np.random.default_rng(6)
    split = lambda n, k: {"x": rng.random((n, 6), dtype=np.float32),  # noqa: E731
                          "y": rng.integers(0, k, n)}
    data = {"train": split(64, 3), "eval": split(45, eval_classes), "test": split(30, 3)}
    keras.utils.set_random_seed(2)
    model = fe.build(lambda: keras.Sequential([keras.Input((6,)),
                                               keras.layers.Dense(3, activation="softmax")]),
                     model_name="m", optimizer=lambda: keras.optimizers.SGD(0.5),
                     loss_name="ce")
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    pipeline = fe.Pipeline(data=data, batch_size=16)
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, verbose=False,
                       traces=[AUC("y", "p"), AUC("y", "p", output_name="auc_w",
                                                  average="weighted")])
    return est, model, data


def test_auc_trace_over_the_eval_and_test_sets():
    est, model, data = _estimator(eval_classes=3)
    record = est.fit().records[0]
    for mode, metrics in (("eval", record.eval_metrics), ("test", est.test())):
        scores = model(data[mode]["x"]).numpy()
        assert metrics["auc"] == pytest.approx(brute_force_auc(data[mode]["y"], scores),
                                               abs=1e-12)
        assert metrics["auc_w"] == pytest.approx(
            brute_force_auc(data[mode]["y"], scores, "weighted"), abs=1e-12)
    assert "auc=" in record.log_line()


def test_a_class_absent_from_the_eval_set_raises():
    est, _, _ = _estimator(eval_classes=2)  # labels 0-1, three score columns
    with pytest.raises(ValueError, match=r"AUC \(keys \('y', 'p'\)\) over the whole eval set "
                                         r"\(45 samples\): class 2 \(of 3\) has no sample"):
        est.fit()
