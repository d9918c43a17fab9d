"""A FastEstimator-style program beyond the seed: augmentation, per-mode batches, traces, test.

On the bundled MNIST sample (4,000 train, 500 eval, 500 test digits):

- the global batch grows from 32 to 64 at epoch 2 and 128 at epoch 4; eval and test run in
  batches of 250;
- augmentation starts at epoch 2 (per-sample random rotation and cutout, drawn per sample,
  epoch and seed, so 2 ranks draw for their halves what one process draws for the whole batch);
- traces: accuracy, macro F1 and a confusion matrix over the whole eval set (summed over the
  ranks), the best model saved by rank 0, early stopping (every rank stops after the same epoch)
  and a per-step cosine learning rate;
- after training, ``Estimator.test()`` on the held-out test digits.

Run it on one process or on many:

    python launch/mnist_traces_augment.py
    fe-horovodrun -np 2 -H localhost:2 --gloo python launch/mnist_traces_augment.py

(`fe-horovodrun` is horovodrun without TensorFlow's start-up lines from its own process;
plain horovodrun runs the same job.)

Options: ``--epochs N`` (default 6), ``--save-dir DIR`` (default ./mnist_best), ``--summary PATH``
writes the run summary and the test metrics as JSON (rank 0), ``--seed S``.
"""

import argparse
import json
import math

import numpy as np

import fe_dist as fe
from fe_dist.architecture import LeNet
from fe_dist.dataset import mnist
from fe_dist.op.numpyop.meta import Sometimes
from fe_dist.op.numpyop.multivariate import Rotate
from fe_dist.op.numpyop.univariate import Cutout
from fe_dist.op.tensorop import Minmax
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import EpochScheduler
from fe_dist.trace.adapt import EarlyStopping, LRScheduler
from fe_dist.trace.io import BestModelSaver
from fe_dist.trace.metric import Accuracy, ConfusionMatrix, F1Score


def get_estimator(epochs=6, save_dir="mnist_best", seed=0):
    (x_train, y_train), (x_eval, y_eval) = mnist.load_data()
    data = {"train": {"x": x_train[..., None], "y": y_train},
            "eval": {"x": x_eval[:500, ..., None], "y": y_eval[:500]},
            "test": {"x": x_eval[500:, ..., None], "y": y_eval[500:]}}
    augment = [EpochScheduler({2: Sometimes(Rotate(inputs="x", outputs="x", limit=15), 0.5)}),
               EpochScheduler({2: Sometimes(Cutout(inputs="x", outputs="x", size=8), 0.3)})]
    pipeline = fe.Pipeline(data=data,
                           batch_size={"train": EpochScheduler({0: 32, 2: 64, 4: 128}),
                                       "eval": 250, "test": 250},
                           ops=[*augment, Minmax(inputs="x", outputs="x")])
    model = fe.build(model_def=lambda: LeNet(input_shape=(28, 28, 1)), model_name="lenet",
                     optimizer="adam", loss_name="ce")
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="y_pred"),
                              SparseCategoricalCrossentropy(inputs=("y", "y_pred"),
                                                            outputs="ce")])
    steps = sum(len(x_train) // b for b in [32, 32, 64, 64] + [128] * max(epochs - 4, 0))

    def cosine(step):
        return 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * min(step / steps, 1.0)))

    traces = [Accuracy(true_key="y", pred_key="y_pred"),
              F1Score(true_key="y", pred_key="y_pred", average="macro"),
              ConfusionMatrix(true_key="y", pred_key="y_pred", num_classes=10),
              BestModelSaver(model=model, save_dir=save_dir, monitor="ce"),
              EarlyStopping(monitor="accuracy", compare="max", patience=2),
              LRScheduler(model=model, lr_fn=cosine)]
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, traces=traces,
                        seed=seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--save-dir", default="mnist_best")
    parser.add_argument("--summary", default=None, help="write summary + test JSON (rank 0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    est = get_estimator(args.epochs, args.save_dir, args.seed)
    summary = est.fit()
    test = est.test()
    if args.summary and fe.distributed.get_context().is_chief:
        with open(args.summary, "w") as f:
            json.dump({**summary.to_dict(), "test": test}, f)
    if fe.distributed.get_context().is_chief:
        matrix = np.array(summary.records[-1].eval_metrics["confusion_matrix"], dtype=int)
        print("confusion matrix of the last eval (rows: true digit, columns: predicted):")
        print(matrix)


if __name__ == "__main__":
    main()
