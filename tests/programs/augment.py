"""A small CNN trained with scheduled augmentation (Sometimes(HorizontalFlip), Rotate,
CoarseDropout and a user NumpyOp from epoch 1). Each rank writes rank<r>.json with: the error a
bad op (Onehot on an image key, scheduled at epoch 1) raised, its final weights, a digest of its
first augmented training batch of epoch 1, and which samples of that batch were flipped.
With --deterministic it calls fe.enable_deterministic first."""

import argparse
import hashlib
import json
import os

import keras
import numpy as np

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.numpyop import NumpyOp
from fe_dist.op.numpyop.meta import Sometimes
from fe_dist.op.numpyop.multivariate import HorizontalFlip, Rotate
from fe_dist.op.numpyop.univariate import CoarseDropout, Onehot
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler

B = 32


class Jitter(NumpyOp):
    """A user op: one sample in numpy, with the seeded generator of the state."""

    def forward(self, data, state):
        return data + state["rng"].normal(0.0, 0.01, data.shape).astype(np.float32)


def program(ops):
    keras.utils.set_random_seed(3)  # the same initial weights in every run
    rng = np.random.default_rng(0)  # the same data on every rank
    x = rng.random((256, 10, 10, 1), dtype=np.float32)
    y = (x[:, :, :5].mean(axis=(1, 2, 3)) > x[:, :, 5:].mean(axis=(1, 2, 3))).astype(np.int64)
    data = {"train": {"x": x, "y": y, "id": np.arange(256)}}
    model = fe.build(lambda: keras.Sequential([
        keras.Input((10, 10, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")]),
        model_name="cnn", loss_name="ce", optimizer=lambda: keras.optimizers.SGD(0.1))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    pipeline = fe.Pipeline(data=data, batch_size=B, ops=ops)
    return pipeline, model, fe.Estimator(pipeline=pipeline, network=network, epochs=2, seed=7,
                                         verbose=False)


def main(args):
    if args.deterministic:  # augmentation draws must not depend on it
        fe.enable_deterministic(11)
    ctx = fe.distributed.get_context()
    try:
        program([Scheduler({1: Onehot("x", "x", num_classes=2)})])[2].fit()
        bad = "no error"
    except ConfigError as err:
        bad = str(err)
    flip = Sometimes(HorizontalFlip("x", "x", mode="train"), 0.5)
    pipeline, model, estimator = program([
        Scheduler({1: flip}),
        Scheduler({1: Rotate("x", "x", limit=10, mode="train")}),
        Scheduler({1: CoarseDropout("x", "x", max_holes=2, max_height=3, max_width=3)}),
        Scheduler({1: Jitter("x", "x")})])
    estimator.fit()
    weights = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    # Which samples of the first global batch of epoch 1 this rank flips: a pipeline of the
    # flip alone, drawn as the training pipeline does.
    flips_only, _, _ = program([Scheduler({1: flip})])
    first = next(iter(flips_only.get_train_dataset(1, B, ctx, seed=7)))
    originals = flips_only.data["train"].data["x"][first["id"].numpy()]
    flips = [bool(np.array_equal(a, b[:, ::-1])) for a, b in zip(first["x"].numpy(), originals)]
    batch = next(iter(pipeline.get_train_dataset(1, B, ctx, seed=7)))
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "bad": bad, "weights": weights.tolist(), "flips": flips,
                   "batch_digest": hashlib.sha1(batch["x"].numpy().tobytes()).hexdigest()}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--deterministic", action="store_true")
    main(parser.parse_args())
