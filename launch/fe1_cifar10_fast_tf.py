"""FastEstimator's apphub ``image_classification/cifar10_fast/cifar10_fast_tf.py`` on fe_dist.

FastEstimator 1.x's program (ResNet9, CIFAR-10 augmentation, a one-cycle learning rate by step)
with ``fastestimator`` replaced by ``fe_dist.fe1``. fe_dist ships no CIFAR-10 and downloads
nothing: ``--data PATH`` reads a local ``.npz`` with x_train, y_train, x_eval (or x_test),
y_eval (or y_test), 32x32x3 uint8 images; without it the program generates random images and
labels of CIFAR-10's shapes (a smoke run: nothing to learn). Run it on one process or many:

    python launch/fe1_cifar10_fast_tf.py --data cifar10.npz
    fe-horovodrun -np 2 -H localhost:2 python launch/fe1_cifar10_fast_tf.py --data cifar10.npz

Options for quick runs: ``--epochs``, ``--batch-size``, ``--train-samples``, ``--eval-samples``.
"""

import argparse
import tempfile

import numpy as np

import fe_dist.fe1 as fe
from fe_dist.fe1.architecture.tensorflow import ResNet9
from fe_dist.fe1.dataset import NumpyDataset
from fe_dist.fe1.op.numpyop.meta import Sometimes
from fe_dist.fe1.op.numpyop.multivariate import HorizontalFlip, PadIfNeeded, RandomCrop
from fe_dist.fe1.op.numpyop.univariate import CoarseDropout, Normalize, Onehot
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.trace.adapt import LRScheduler
from fe_dist.fe1.trace.io import BestModelSaver
from fe_dist.fe1.trace.metric import Accuracy


def load_data(path=None, train_samples=50000, eval_samples=10000):
    """(train, eval) NumpyDatasets of 32x32x3 uint8 images: from ``path``, or generated (random
    images and labels, the same on every rank) of CIFAR-10's shapes."""
    if path is not None:
        with np.load(path) as f:
            ev = "x_eval" if "x_eval" in f.files else "x_test"
            x_train, y_train = f["x_train"][:train_samples], f["y_train"][:train_samples]
            x_eval, y_eval = f[ev][:eval_samples], f[ev.replace("x_", "y_")][:eval_samples]
    else:
        rng = np.random.default_rng(0)
        x_train = rng.integers(0, 256, (train_samples, 32, 32, 3), dtype=np.uint8)
        x_eval = rng.integers(0, 256, (eval_samples, 32, 32, 3), dtype=np.uint8)
        y_train, y_eval = rng.integers(0, 10, train_samples), rng.integers(0, 10, eval_samples)
    return (NumpyDataset({"x": x_train, "y": y_train.reshape(-1)}),
            NumpyDataset({"x": x_eval, "y": y_eval.reshape(-1)}))


def get_estimator(epochs=24, batch_size=512, save_dir=tempfile.mkdtemp(), data_path=None,
                  train_samples=50000, eval_samples=10000):
    # step 1: prepare dataset
    train_data, eval_data = load_data(data_path, train_samples, eval_samples)
    pipeline = fe.Pipeline(
        train_data=train_data,
        eval_data=eval_data,
        batch_size=batch_size,
        ops=[
            Normalize(inputs="x", outputs="x", mean=(0.4914, 0.4822, 0.4465),
                      std=(0.2471, 0.2435, 0.2616)),
            PadIfNeeded(min_height=40, min_width=40, image_in="x", image_out="x", mode="train"),
            RandomCrop(32, 32, image_in="x", image_out="x", mode="train"),
            Sometimes(HorizontalFlip(image_in="x", image_out="x", mode="train")),
            CoarseDropout(inputs="x", outputs="x", mode="train", max_holes=1),
            Onehot(inputs="y", outputs="y", mode="train", num_classes=10, label_smoothing=0.2)
        ])

    # step 2: prepare network
    model = fe.build(model_fn=ResNet9, optimizer_fn="adam")
    network = fe.Network(ops=[
        ModelOp(model=model, inputs="x", outputs="y_pred"),
        CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
        UpdateOp(model=model, loss_name="ce")
    ])

    # step 3 prepare estimator
    def lr_schedule(step):
        if step <= 490:
            lr = step / 490 * 0.4
        else:
            lr = (2352 - step) * 0.4 / 1862
        return lr * 0.1

    traces = [
        Accuracy(true_key="y", pred_key="y_pred"),
        BestModelSaver(model=model, save_dir=save_dir, metric="accuracy", save_best_mode="max"),
        LRScheduler(model=model, lr_fn=lr_schedule)
    ]
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, traces=traces)
    return estimator


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local CIFAR-10 .npz")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--train-samples", type=int, default=50000)
    parser.add_argument("--eval-samples", type=int, default=10000)
    args = parser.parse_args(argv)
    est = get_estimator(epochs=args.epochs, batch_size=args.batch_size, data_path=args.data,
                        train_samples=args.train_samples, eval_samples=args.eval_samples)
    return est.fit()


if __name__ == "__main__":
    main()
