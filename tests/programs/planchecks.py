"""Ranks on one program, under fe.enable_deterministic, in one launch:

1. ids: a stream shuffled with a seed (ds.shuffle(64, seed=7)), one epoch of 4 steps; each rank
   records the sample ids it trained on (a trace reading key "id") and a checksum of the
   weights after it.
2. errors: programs where rank 1 differs in one setting (its stream's shuffle seed, SGD's
   momentum, the learning rate, gradient_compression, allreduce); each rank records what fit()
   raised.
rank<r>.json is written then. 3. Last, rank 1's stream holds 96 of the 128 samples planned (its
first samples are rank 0's, so the plan agrees): the job must end, not hang, with a message
naming the split and the counts.
"""

import argparse
import hashlib
import json
import os

import keras
import numpy as np
import tensorflow as tf

import fe_dist as fe
from fe_dist.dataset import TFDataset
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.trace import Trace


class Ids(Trace):
    def __init__(self):
        super().__init__(inputs="id", mode="train")
        self.seen = []

    def on_batch_end(self, data):
        self.seen.extend(int(i) for i in data["id"])


def stream(n=64, seed=7, take=None):
    rng = np.random.default_rng(0)  # the same samples on every rank
    samples = {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": rng.integers(0, 3, n),
               "id": np.arange(n)}
    ds = tf.data.Dataset.from_tensor_slices(samples).shuffle(n, seed=seed)
    if take is not None:  # a shorter copy of the data on this host (same first samples)
        ds = ds.take(take)
    return TFDataset(ds.filter(lambda e: True), num_samples=n)  # length unknown: as from files


def estimator(data, optimizer=None, lr=None, traces=None, **network):
    model = fe.build(lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]),
                     model_name="m", loss_name="ce", lr=lr,
                     optimizer=optimizer or (lambda: keras.optimizers.SGD(0.1, momentum=0.9)))
    net = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                      SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce",
                                                    from_logits=True)], **network)
    return fe.Estimator(fe.Pipeline({"train": data}, batch_size=16), net, epochs=1,
                        verbose=False, traces=traces), model


def main(out):
    fe.enable_deterministic(5)
    ctx = fe.distributed.get_context()
    odd = ctx.rank == 1
    ids = Ids()
    est, model = estimator(stream(), traces=[ids])
    est.fit()
    weights = hashlib.sha1(b"".join(v.numpy().tobytes() for v in model.weights)).hexdigest()
    cases = {
        "stream": dict(data=stream(seed=8 if odd else 7)),
        "momentum": dict(optimizer=lambda: keras.optimizers.SGD(0.1, momentum=0.5 if odd
                                                                else 0.9)),
        "lr": dict(lr=0.2 if odd else 0.1),
        "fp16": dict(gradient_compression="fp16" if odd else None),
        "per_tensor": dict(allreduce="per_tensor" if odd else "grouped"),
    }
    errors = {}
    for case, kwargs in cases.items():
        kwargs.setdefault("data", stream())
        try:
            estimator(**kwargs)[0].fit()
            errors[case] = None
        except Exception as err:  # noqa: BLE001 - the test reads what each rank raised
            errors[case] = [type(err).__name__, str(err)]
    with open(os.path.join(out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "ids": ids.seen, "weights": weights, "errors": errors}, f)
    # Rank 1 alone runs out after 6 of the 8 steps; rank 0 waits in step 6's allreduce.
    estimator(stream(128, take=96 if odd else None))[0].fit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    main(parser.parse_args().out)
