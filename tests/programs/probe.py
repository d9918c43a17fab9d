"""A small deterministic two-model schedule that reports everything the multi-rank tests check.

Epoch 0 trains model "a" at global batch 32, epoch 1 model "b" at 33 (odd: per-rank batches
differ), epoch 2 model "a" at 33; both models carry model.losses (an L2 penalty, an add_loss
batch mean). Each rank writes rank<r>.json to --out with: the summary, a
weight checksum per model after every epoch, the final weights, the trainable variable counts,
the sample ids its training dataset yields in every step of every epoch, and, after every
epoch, the eval loss and accuracy computed here in numpy over the whole eval set (201 samples)
with that epoch's eval model, to check fe_dist's sharded eval against (and the same for
Estimator.test() on a 101-sample test split after training); under the MPI backend also
the log of every MPI_Allreduce it ran. --compression fp16 sends float16 gradients; --b-hidden
gives model b another width, so the two models' gradient buffers differ in size.
"""

import argparse
import hashlib
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
from fe_dist.schedule import Scheduler

BATCHES = {0: 32, 1: 33, 2: 33}
ACTIVE = {0: "a", 1: "b", 2: "a"}  # the model each epoch trains and evaluates
SEED = 7
N_EVAL = 201  # odd, and a multiple of neither per-rank eval batch (17, 16)
EVAL_BATCH = 33  # per mode: eval batches of 17 and 16 on 2 ranks, whatever the train batch
N_TEST, TEST_BATCH = 101, 9  # Estimator.test(): shares 51/50 in per-rank batches of 5 and 4


class BatchMeanPenalty(keras.layers.Layer):
    """``add_loss`` of a mean over the batch: on N ranks each rank's term covers its share, and
    fe_dist weights it by that share, so the sum is the mean over the global batch."""

    def call(self, x):
        self.add_loss(0.05 * keras.ops.mean(keras.ops.square(x)))
        return x


def tiny_model(hidden=16):
    # model.losses of both kinds (an L2 weight penalty, a batch mean) under uneven shares
    # (33 on 2 ranks) and micro-batches: they must count once over the ranks.
    return keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(hidden, activation="relu",
                                                kernel_regularizer=keras.regularizers.L2(0.01)),
                             BatchMeanPenalty(),
                             keras.layers.Dense(10, activation="softmax")])


def eval_reference(model, x, y):
    """Mean cross-entropy and accuracy of ``model`` on all of (x, y), computed in numpy (float64)
    from its weights: no fe_dist code, no sharding, no batching."""
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    hidden = np.maximum(x.reshape(len(x), -1).astype(np.float64) @ w1 + b1, 0)
    logits = hidden @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ce = -np.log(probs[np.arange(len(y)), y])
    return {"ce": float(ce.mean()), "accuracy": float((probs.argmax(axis=1) == y).mean()),
            "correct": int((probs.argmax(axis=1) == y).sum())}


def checksum(model):
    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def make_estimator(n_train=600, checkpoint_dir=None, b_hidden=16):
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[:n_train, ..., None], "y": y[:n_train],
                      "idx": np.arange(n_train)},
            "eval": {"x": xe[:N_EVAL, ..., None], "y": ye[:N_EVAL]},
            "test": {"x": xe[N_EVAL:N_EVAL + N_TEST, ..., None],
                     "y": ye[N_EVAL:N_EVAL + N_TEST]}}
    pipeline = fe.Pipeline(data=data, batch_size={"train": Scheduler(BATCHES),
                                                  "eval": EVAL_BATCH, "test": TEST_BATCH},
                           ops=[Resize(inputs="x", size=(12, 12), outputs="x"),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    keras.utils.set_random_seed(SEED)
    a = fe.build(tiny_model, model_name="a", optimizer=lambda: keras.optimizers.SGD(0.1),
                 loss_name="ce")
    b = fe.build(lambda: tiny_model(b_hidden), model_name="b", optimizer=lambda: keras.optimizers.SGD(0.1),
                 loss_name="ce")
    models = {"a": a, "b": b}
    network = fe.Network(ops=[Scheduler({e: ModelOp(inputs="x", model=models[m], outputs="p")
                                         for e, m in ACTIVE.items()}),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    return fe.Estimator(pipeline=pipeline, network=network, epochs=len(BATCHES), seed=SEED,
                        checkpoint_dir=checkpoint_dir)


def main(out_dir, comm=None, max_rank_batch=None, allreduce="grouped", compression=None,
         b_hidden=16):
    ctx = fe.distributed.init(comm=comm)
    est = make_estimator(b_hidden=b_hidden)
    est.max_rank_batch = max_rank_batch
    est.network.allreduce = allreduce
    est.network.gradient_compression = compression
    models = est.network.models
    coverage = []
    for epoch, batch in BATCHES.items():
        ds = est.pipeline.get_train_dataset(epoch, batch, ctx, seed=SEED)
        coverage.append([b["idx"].numpy().tolist() for b in ds])
    checksums = [{n: checksum(m) for n, m in models.items()}]
    # The eval inputs as the pipeline ops make them (bilinear resize, then / 255), on the whole
    # eval set at once.
    eval_data = {key: est.pipeline.column("eval", key) for key in ("x", "y")}
    x_eval = (tf.image.resize(eval_data["x"], (12, 12)).numpy() * np.float32(1 / 255))
    eval_refs = []

    def on_epoch_end(record):
        checksums.append({n: checksum(m) for n, m in models.items()})
        eval_refs.append(eval_reference(models[ACTIVE[record.epoch]], x_eval, eval_data["y"]))

    est.on_epoch_end = on_epoch_end
    summary = est.fit()
    test_data = {key: est.pipeline.column("test", key) for key in ("x", "y")}
    x_test = (tf.image.resize(test_data["x"], (12, 12)).numpy() * np.float32(1 / 255))
    test_metrics = est.test()
    test_reference = eval_reference(models[ACTIVE[len(BATCHES) - 1]], x_test, test_data["y"])
    report = {
        "rank": ctx.rank, "size": ctx.size, "backend": ctx.backend, "threads": ctx.threads,
        "summary": summary.to_dict(), "checksums": checksums, "coverage": coverage,
        "trainable": {n: len(m.trainable_variables) for n, m in models.items()},
        "trainable_shapes": {n: [list(v.shape) for v in m.trainable_variables]
                             for n, m in models.items()},
        "eval_reference": eval_refs,
        "test_metrics": test_metrics, "test_reference": test_reference,
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
    parser.add_argument("--b-hidden", type=int, default=16)
    args = parser.parse_args()
    main(args.out, max_rank_batch=args.max_rank_batch, allreduce=args.allreduce,
         compression=args.compression, b_hidden=args.b_hidden)
    sys.exit(0)
