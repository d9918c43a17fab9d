"""FastEstimator's advanced tutorial 4 (Trace) on fe_dist.

FastEstimator 1.x's program with ``fastestimator`` replaced by ``fe_dist.fe1`` and MNIST by the
bundled 5,000-digit sample. Two changes, both for N ranks: a trace sees its rank's share of each
batch, so FBetaScore gathers every rank's labels and predictions at the epoch end
(``self.system.gather``) before scoring, as any trace that collects samples must; and the score
is computed with numpy (scikit-learn's weighted F-beta, which this environment lacks). Run it on
one process or on many:

    python launch/fe1_t04_trace.py
    fe-horovodrun -np 2 -H localhost:2 python launch/fe1_t04_trace.py

Options for quick runs: ``--epochs`` (of the first two parts), ``--train-samples N``;
``--summary PATH`` writes the results as JSON (rank 0).
"""

import argparse
import json

import numpy as np

import fe_dist.fe1 as fe
from fe_dist.fe1.architecture.tensorflow import LeNet
from fe_dist.fe1.backend import to_number
from fe_dist.fe1.dataset.data import mnist
from fe_dist.fe1.op.numpyop.univariate import ExpandDims, Minmax
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.trace import Trace
from fe_dist.fe1.trace.metric import Precision, Recall


def get_pipeline_model_network(model_name="LeNet", batch_size=32, data_path=None,
                               train_samples=None):
    train_data, eval_data = mnist.load_data(path=data_path)
    if train_samples:
        train_data.split(len(train_data) - train_samples)
    test_data = eval_data.split(0.5)

    pipeline = fe.Pipeline(train_data=train_data,
                           eval_data=eval_data,
                           test_data=test_data,
                           batch_size=batch_size,
                           ops=[ExpandDims(inputs="x", outputs="x"),
                                Minmax(inputs="x", outputs="x")])

    model = fe.build(model_fn=LeNet, optimizer_fn="adam", model_names=model_name)

    network = fe.Network(ops=[
        ModelOp(model=model, inputs="x", outputs="y_pred"),
        CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
        UpdateOp(model=model, loss_name="ce")
    ])

    return pipeline, model, network


def fbeta_score(y_true, y_pred, beta, average="weighted"):
    """scikit-learn's multi-class F-beta with average='weighted' (a class never predicted
    scores 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = np.union1d(y_true, y_pred)
    scores, support = [], []
    for c in labels:
        tp = np.sum((y_pred == c) & (y_true == c))
        precision = tp / max(np.sum(y_pred == c), 1)
        recall = tp / max(np.sum(y_true == c), 1)
        denominator = beta ** 2 * precision + recall
        scores.append((1 + beta ** 2) * precision * recall / denominator if denominator else 0.0)
        support.append(np.sum(y_true == c))
    return float(np.average(scores, weights=support))


class FBetaScore(Trace):
    def __init__(self, true_key, pred_key, beta=2, output_name="f_beta_score",
                 mode=["eval", "test"]):
        super().__init__(inputs=(true_key, pred_key), outputs=output_name, mode=mode)
        self.true_key = true_key
        self.pred_key = pred_key
        self.beta = beta
        self.y_true = []
        self.y_pred = []

    def on_epoch_begin(self, data):
        self.y_true = []
        self.y_pred = []

    def on_batch_end(self, data):
        y_true, y_pred = to_number(data[self.true_key]), to_number(data[self.pred_key])
        y_pred = np.argmax(y_pred, axis=-1)
        self.y_pred.extend(y_pred.ravel())
        self.y_true.extend(y_true.ravel())

    def on_epoch_end(self, data):
        # fe_dist: every rank's samples (a trace sees its rank's share of each batch).
        parts = self.system.gather((self.y_true, self.y_pred))
        y_true = [y for part in parts for y in part[0]]
        y_pred = [y for part in parts for y in part[1]]
        score = fbeta_score(y_true, y_pred, beta=self.beta, average="weighted")
        data.write_with_log(self.outputs[0], score)


class CustomF1Score(Trace):
    def __init__(self, precision_key, recall_key, mode=["eval", "test"], output_name="f1_score"):
        super().__init__(inputs=(precision_key, recall_key), outputs=output_name, mode=mode)
        self.precision_key = precision_key
        self.recall_key = recall_key

    def on_epoch_end(self, data):
        precision = data[self.precision_key]
        recall = data[self.recall_key]
        score = 2 * (precision * recall) / (precision + recall)
        data.write_with_log(self.outputs[0], score)


class MonitorPred(Trace):
    def __init__(self, true_key, pred_key, mode="train"):
        super().__init__(inputs=(true_key, pred_key), mode=mode)
        self.true_key = true_key
        self.pred_key = pred_key
        self.seen = []  # fe_dist: (global step, batch index, epoch) of each batch, for tests

    def on_batch_end(self, data):
        print("Global Step Index: ", self.system.global_step)
        print("Batch Index: ", self.system.batch_idx)
        print("Epoch: ", self.system.epoch_idx)
        print("Batch data has following keys: ", list(data.keys()))
        print("Batch true labels: ", data[self.true_key])
        print("Batch predictictions: ", data[self.pred_key])
        self.seen.append((self.system.global_step, self.system.batch_idx, self.system.epoch_idx))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local mnist.npz (default: the sample)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the first two parts (the tutorial's: 4 and 2)")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--summary", default=None, help="write the results JSON here (rank 0)")
    args = parser.parse_args(argv)
    size = dict(data_path=args.data, train_samples=args.train_samples)

    pipeline, model, network = get_pipeline_model_network(**size)
    traces = FBetaScore(true_key="y", pred_key="y_pred", beta=2, output_name="f2_score",
                        mode="eval")
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=args.epochs or 4,
                             traces=traces, log_steps=1000)
    fbeta = estimator.fit()

    pipeline, model, network = get_pipeline_model_network(**size)
    traces = [
        Precision(true_key="y", pred_key="y_pred", mode=["eval", "test"], output_name="precision"),
        Recall(true_key="y", pred_key="y_pred", mode=["eval", "test"], output_name="recall"),
        CustomF1Score(precision_key="precision", recall_key="recall", mode=["eval", "test"],
                      output_name="f1_score")
    ]
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=args.epochs or 2,
                             traces=traces, log_steps=1000)
    f1 = estimator.fit()

    pipeline, model, network = get_pipeline_model_network(batch_size=4, **size)
    traces = MonitorPred(true_key="y", pred_key="y_pred")
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=2, traces=traces,
                             max_train_steps_per_epoch=2, log_steps=None)
    monitor = estimator.fit()

    if args.summary and estimator.is_chief:
        with open(args.summary, "w") as f:
            json.dump({"fbeta": fbeta.to_dict(), "f1": f1.to_dict(),
                       "monitor": monitor.to_dict(), "monitor_seen": traces.seen}, f)
    return fbeta, f1, monitor, traces.seen


if __name__ == "__main__":
    main()
