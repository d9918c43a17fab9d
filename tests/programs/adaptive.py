"""An AdaptiveBatch run on generated data. Each rank writes rank<r>.json to --out with the
records (batches, noise scales) and final weights of a 4-epoch run, and trains a second run of 2
epochs with a checkpoint in <out>/ckpt that the test resumes on another number of ranks."""

import argparse
import json
import os
import sys

import keras
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fe_dist as fe  # noqa: E402
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy  # noqa: E402
from fe_dist.op.tensorop.model import ModelOp  # noqa: E402
from fe_dist.schedule import AdaptiveBatch  # noqa: E402


def estimator(epochs, checkpoint_dir=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(384, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("int64") + (x[:, 3] > 1)
    keras.utils.set_random_seed(5)
    model = fe.build(lambda: keras.Sequential([keras.Input((10,)),
                                               keras.layers.Dense(16, activation="tanh"),
                                               keras.layers.Dense(3, activation="softmax")]),
                     model_name="m", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.5))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    pipeline = fe.Pipeline(data={"train": {"x": x, "y": y}},
                           batch_size=AdaptiveBatch(initial=8, maximum=128, lr_rule="adascale"))
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=3,
                        verbose=False, checkpoint_dir=checkpoint_dir), model


def report(summary, model):
    return {"batches": [r.global_batch for r in summary.records],
            "per_rank": [r.per_rank_batch for r in summary.records],
            "noise": [r.noise_scale for r in summary.records],
            "rates": [r.learning_rates for r in summary.records],
            "weights": [w.tolist() for w in model.get_weights()]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ctx = fe.distributed.init()
    est, model = estimator(4)
    whole = report(est.fit(), model)
    est, _ = estimator(2, checkpoint_dir=os.path.join(args.out, "ckpt"))
    est.fit()
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"size": ctx.size, **whole}, f)
