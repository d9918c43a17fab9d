"""A small deterministic two-model schedule that reports everything the multi-rank tests check.

Epoch 0 trains model "a" at global batch 32, epoch 1 model "b" at 33 (odd: per-rank batches
differ), epoch 2 model "a" at 33. Each rank writes rank<r>.json to --out with: the summary, a
weight checksum per model after every epoch, the final weights, the trainable variable counts,
and the sample ids its training dataset yields in every step of every epoch; under the MPI
backend also the log of every MPI_Allreduce it ran. --compression fp16 sends float16 gradients.
"""

import argparse
import hashlib
import json
import os
import sys

import keras
import numpy as np

import fe_dist as fe
from fe_dist.dataset import mnist
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler

BATCHES = {0: 32, 1: 33, 2: 33}
SEED = 7


def tiny_model():
    return keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def checksum(model):
    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def make_estimator(n_train=600, checkpoint_dir=None):
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[:n_train, ..., None], "y": y[:n_train],
                      "idx": np.arange(n_train)},
            "eval": {"x": xe[:201, ..., None], "y": ye[:201]}}
    pipeline = fe.Pipeline(data=data, batch_size=Scheduler(BATCHES),
                           ops=[Resize(inputs="x", size=(12, 12), outputs="x"),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    keras.utils.set_random_seed(SEED)
    a = fe.build(tiny_model, model_name="a", optimizer=lambda: keras.optimizers.SGD(0.1),
                 loss_name="ce")
    b = fe.build(tiny_model, model_name="b", optimizer=lambda: keras.optimizers.SGD(0.1),
                 loss_name="ce")
    network = fe.Network(ops=[Scheduler({0: ModelOp(inputs="x", model=a, outputs="p"),
                                         1: ModelOp(inputs="x", model=b, outputs="p"),
                                         2: ModelOp(inputs="x", model=a, outputs="p")}),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    return fe.Estimator(pipeline=pipeline, network=network, epochs=len(BATCHES), seed=SEED,
                        checkpoint_dir=checkpoint_dir)


def main(out_dir, comm=None, max_rank_batch=None, allreduce="grouped", compression=None):
    ctx = fe.distributed.init(comm=comm)
    est = make_estimator()
    est.max_rank_batch = max_rank_batch
    est.network.allreduce = allreduce
    est.network.gradient_compression = compression
    models = est.network.models
    coverage = []
    for epoch, batch in BATCHES.items():
        ds = est.pipeline.get_train_dataset(epoch, batch, ctx, seed=SEED)
        coverage.append([b["idx"].numpy().tolist() for b in ds])
    checksums = [{n: checksum(m) for n, m in models.items()}]
    est.on_epoch_end = lambda r: checksums.append({n: checksum(m) for n, m in models.items()})
    summary = est.fit()
    report = {
        "rank": ctx.rank, "size": ctx.size, "backend": ctx.backend, "threads": ctx.threads,
        "summary": summary.to_dict(), "checksums": checksums, "coverage": coverage,
        "trainable": {n: len(m.trainable_variables) for n, m in models.items()},
        "weights": {n: [w.tolist() for w in m.get_weights()] for n, m in models.items()},
        # The MPI backend's record of each MPI_Allreduce it ran: (dtype, elements, bytes).
        "allreduce_log": [list(c) for c in getattr(ctx, "allreduce_log", [])],
    }
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-rank-batch", type=int, default=None)
    parser.add_argument("--allreduce", default="grouped")
    parser.add_argument("--compression", default=None)
    args = parser.parse_args()
    main(args.out, max_rank_batch=args.max_rank_batch, allreduce=args.allreduce,
         compression=args.compression)
    sys.exit(0)
