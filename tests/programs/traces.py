"""Traces on several ranks: metrics, EarlyStopping, BestModelSaver and a resume.

A first fit trains epochs 0-1 with a checkpoint; a second program (new models and traces, same
seed) resumes for up to 6 epochs. EarlyStopping(monitor="ce", baseline=0.0, patience=3) never
sees an improvement, so its wait counter is 2 at the checkpoint and the resumed run stops after
epoch 2 exactly when the counter was restored. After every epoch each rank computes, in numpy
(float64) from the current weights, the accuracy, confusion matrix and per-class
precision/recall/F1 over the whole eval set (201 samples: shares 101/100 on 2 ranks), and the
one-vs-rest macro ROC AUC by a pairwise count over the model's own float32 scores of the whole
set, to check the traces' values against, and the same for Estimator.test() on 101 test
samples. Then a third program resumes the stopped run (epochs=6 again): every rank must
return the 3 saved records at once and train nothing (rank 0 alone knowing the run stopped
would leave the other ranks training an epoch alone, in a collective rank 0 never joins).
A last fit has a trace that fails on rank 1 only, before the collective rank 0 then waits in:
every rank must raise. Each rank writes rank<r>.json to --out.
"""

import argparse
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

import fe_dist as fe
from fe_dist.dataset import mnist
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.trace import Trace
from fe_dist.trace.adapt import EarlyStopping
from fe_dist.trace.io import BestModelSaver
from fe_dist.trace.metric import AUC, Accuracy, ConfusionMatrix, F1Score, Precision, Recall

N_TRAIN, N_EVAL, N_TEST, SEED = 600, 201, 101, 7

saves = [0]  # calls of save_weights on this rank
_save_weights = keras.Model.save_weights


def counting_save_weights(self, *args, **kwargs):
    saves[0] += 1
    return _save_weights(self, *args, **kwargs)


keras.Model.save_weights = counting_save_weights


def pairwise_auc(y, logits):
    """One-vs-rest macro ROC AUC: per class, the fraction of (positive, negative) pairs whose
    positive scores higher, a tie counting half; the mean over classes."""
    aucs = []
    for c in range(logits.shape[1]):
        pos, neg = logits[y == c, c], logits[y != c, c]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        aucs.append(wins / (pos.size * neg.size))
    return float(np.mean(aucs))


def scores(model, x, y):
    """Accuracy, confusion matrix, per-class precision/recall/F1 over all of (x, y), in numpy;
    AUC from the model's float32 scores (ranks are sensitive to the last bit of near ties)."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    pred = np.argmax(np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0) @ w2 + b2, axis=1)
    cm = np.zeros((10, 10), np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(tp / cm.sum(axis=0))
        recall = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * tp / (cm.sum(axis=0) + cm.sum(axis=1)))
    return {"accuracy": float((pred == y).mean()), "confusion_matrix": cm.tolist(),
            "auc": pairwise_auc(y, model(x).numpy()),
            "precision": precision.tolist(), "recall": recall.tolist(), "f1_score": f1.tolist()}


class FailsOnRank1(Trace):
    """Raises on rank 1 before the sum rank 0 is waiting in."""

    def on_epoch_end(self, data):
        if self.system.rank == 1:
            raise ValueError("trace failure on rank 1")
        self.system.sum_over_ranks(np.ones(3))


def make_estimator(directory, epochs, traces=None):
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[:N_TRAIN, ..., None], "y": y[:N_TRAIN]},
            "eval": {"x": xe[:N_EVAL, ..., None], "y": ye[:N_EVAL]},
            "test": {"x": xe[N_EVAL:N_EVAL + N_TEST, ..., None],
                     "y": ye[N_EVAL:N_EVAL + N_TEST]}}
    pipeline = fe.Pipeline(data=data, batch_size=32,
                           ops=[Resize(inputs="x", size=(12, 12), outputs="x"),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    keras.utils.set_random_seed(SEED)
    model = fe.build(lambda: keras.Sequential([
        keras.Input((12, 12, 1)), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)]),
        model_name="a", optimizer=lambda: keras.optimizers.SGD(0.1), loss_name="ce")
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce",
                                                            from_logits=True)])
    default_traces = [Accuracy("y", "p"), Precision("y", "p"), Recall("y", "p"), F1Score("y", "p"),
              ConfusionMatrix("y", "p", num_classes=10), AUC("y", "p"),
              BestModelSaver(model, os.path.join(directory, "best"), monitor="ce"),
              EarlyStopping(monitor="ce", baseline=0.0, patience=3)]
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=SEED,
                       checkpoint_dir=None if traces else os.path.join(directory, "ckpt"),
                       traces=traces or default_traces)
    inputs = {m: tf.image.resize(data[m]["x"], (12, 12)).numpy() * np.float32(1 / 255)
              for m in ("eval", "test")}
    reference = []
    est.on_epoch_end = lambda record: reference.append(scores(model, inputs["eval"],
                                                              data["eval"]["y"]))
    est.test_reference = lambda: scores(model, inputs["test"], data["test"]["y"])
    return est, reference


def main(out_dir, directory):
    ctx = fe.distributed.init()
    est, reference = make_estimator(directory, epochs=2)
    first = est.fit()
    est, resumed_reference = make_estimator(directory, epochs=6)
    resumed = est.fit(resume=True)
    stopper = est.traces.all[-1]
    test = est.test()
    test_reference = est.test_reference()
    stopped, _ = make_estimator(directory, epochs=6)
    again = stopped.fit(resume=True)
    failing, _ = make_estimator(directory, epochs=1, traces=[FailsOnRank1()])
    try:
        failing.fit()
        failure = None
    except Exception as err:  # noqa: BLE001 - reported
        failure = f"{type(err).__name__}: {err}"
    report = {"backend": ctx.backend, "first": [dataclass_dict(r) for r in first.records],
              "resumed": [dataclass_dict(r) for r in resumed.records],
              "reference": reference + resumed_reference, "saves": saves[0],
              "stopper": {"wait": stopper.wait, "stopped_epoch": stopper.stopped_epoch},
              "test": test, "test_reference": test_reference, "failure": failure,
              # The checkpoint's weights, those the resumed run ended with: no step ran.
              "stopped_again": {"epochs": [r.epoch for r in again.records],
                                "same_weights": all(np.array_equal(w, w0) for w, w0 in zip(
                                    stopped.network.models["a"].get_weights(),
                                    est.network.models["a"].get_weights()))}}
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f)


def dataclass_dict(record):
    """The parts of a record that must be the same on every rank."""
    return {"epoch": record.epoch, "eval_metrics": record.eval_metrics,
            "train_loss": record.train_loss}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    main(args.out, args.dir)
    sys.exit(0)
