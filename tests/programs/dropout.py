"""A Dropout model under fe.enable_deterministic; each rank writes rank<r>.json with its
Dropout seed state after every epoch (what its masks were drawn from), a checksum of the
trainable weights after every epoch, and the mask its Dropout layer draws for a fixed input at
the start of each epoch (recorded by a user op)."""

import argparse
import hashlib
import json
import os

import keras
import numpy as np
import tensorflow as tf

import fe_dist as fe
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp


def main(args):
    fe.enable_deterministic(21)
    ctx = fe.distributed.get_context()
    rng = np.random.default_rng(0)  # the same data on every rank
    data = {"train": {"x": rng.normal(size=(256, 8)).astype(np.float32),
                      "y": rng.integers(0, 4, 256)}}
    model = fe.build(lambda: keras.Sequential([keras.Input((8,)), keras.layers.Dense(32),
                                               keras.layers.Dropout(0.5),
                                               keras.layers.Dense(4, activation="softmax")]),
                     model_name="drop", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(0.1))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    dropout = model.layers[1]
    states, weights = [], []

    def on_epoch_end(record):
        states.append([int(v) for v in dropout.seed_generator.state.numpy()])
        h = hashlib.sha1()
        for v in model.trainable_variables:
            h.update(v.numpy().tobytes())
        weights.append(h.hexdigest())

    fe.Estimator(pipeline=fe.Pipeline(data=data, batch_size=32), network=network, epochs=2,
                 verbose=False, on_epoch_end=on_epoch_end).fit()
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "states": states, "weights": weights}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    main(parser.parse_args())
