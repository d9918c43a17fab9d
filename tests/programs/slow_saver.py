"""BestModelSaver on 2 ranks whose rank 0 writes slowly (longer than the stall timeout the test
sets): the job must finish. Each rank writes rank<r>.json with its records."""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

import fe_dist as fe
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.trace.io import BestModelSaver


def main(out, delay):
    ctx = fe.distributed.get_context()
    rng = np.random.default_rng(0)
    split = lambda n: {"x": rng.random((n, 4), dtype=np.float32),  # noqa: E731
                       "y": rng.integers(0, 3, n)}
    keras.utils.set_random_seed(0)
    model = fe.build(lambda: keras.Sequential([keras.Input((4,)),
                                               keras.layers.Dense(3, activation="softmax")]),
                     model_name="m", loss_name="ce")
    save_weights = model.save_weights

    def slow_save(path, *args, **kwargs):
        time.sleep(delay)  # a large model on a slow disk
        return save_weights(path, *args, **kwargs)

    model.save_weights = slow_save
    est = fe.Estimator(
        pipeline=fe.Pipeline(data={"train": split(64), "eval": split(20)}, batch_size=16),
        network=fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                            SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")]),
        epochs=2, verbose=False,
        traces=[BestModelSaver(model, os.path.join(out, "best"), monitor="ce")])
    records = est.fit().records
    with open(os.path.join(out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"records": [r.eval_metrics for r in records]}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--delay", type=float, default=7.0)
    args = parser.parse_args()
    main(args.out, args.delay)
    sys.exit(0)
