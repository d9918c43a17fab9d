"""The option matrix of issue 10 in one launch: each configuration (defaults, fp16 gradient
compression, accumulation with an uneven last micro-batch, per-tensor allreduce, mixed precision,
a synchronised BatchNorm model) trains 2 epochs from the same start, one after another in this
process. Each rank writes rank<r>.json with, per configuration, every model variable at the end,
a checksum of them, the records, and (MPI backend) the dtypes of the MPI_Allreduce calls it ran.
"""

import argparse
import collections
import hashlib
import json
import os

import keras
import numpy as np

import fe_dist as fe
from fe_dist.dataset import mnist
from fe_dist.layers import SyncBatchNormalization
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler

CONFIGS = {
    "defaults": {},
    "fp16": {"gradient_compression": "fp16"},
    "accumulation": {"max_rank_batch": 5},  # 17 -> 5+5+5+2, 16 -> 5+5+5+1
    "per_tensor": {"allreduce": "per_tensor"},
    "mixed_precision": {"mixed_precision": True},
    "sync_bn": {"bn": True},
}


def model_def(bn: bool):
    # No bias before BatchNorm (as users write it): BN removes it, so its gradient is rounding
    # noise, which Adam scales up to full steps in whatever direction the rounding points.
    layers = [keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3, use_bias=not bn)]
    if bn:
        layers.append(SyncBatchNormalization(momentum=0.5))
    layers += [keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(16, "relu"),
               # float32 output under mixed precision, as Keras recommends for the last layer
               keras.layers.Dense(10, activation="softmax", dtype="float32")]
    return keras.Sequential(layers)


def run(name: str, options: dict, data: dict) -> dict:
    ctx = fe.distributed.get_context()
    keras.utils.set_random_seed(4)  # the same start weights for every launch
    model = fe.build(lambda: model_def(options.get("bn", False)), model_name=f"m_{name}",
                     loss_name="ce", optimizer=lambda: keras.optimizers.Adam(1e-3),
                     mixed_precision=options.get("mixed_precision", False))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")],
                         gradient_compression=options.get("gradient_compression"),
                         allreduce=options.get("allreduce", "grouped"))
    pipeline = fe.Pipeline(data=data, batch_size=Scheduler({0: 32, 1: 33}),
                           ops=[Resize(inputs="x", size=(12, 12), outputs="x"),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    log = getattr(ctx, "allreduce_log", None)
    logged = len(log) if log is not None else 0
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=2, seed=9, verbose=False,
                           max_rank_batch=options.get("max_rank_batch")).fit()
    variables = {v.path.split("/", 1)[-1]: v.numpy().astype(np.float64).tolist()
                 for v in model.variables if "seed_generator" not in v.path}
    h = hashlib.sha1()
    for v in model.variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    calls = list(log)[logged:] if log is not None else []
    return {"variables": variables, "checksum": h.hexdigest(),
            "records": summary.to_dict()["records"],
            "allreduce_dtypes": dict(collections.Counter(c[0] for c in calls))}


def main(args):
    ctx = fe.distributed.get_context()
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[:330, ..., None], "y": y[:330]},
            "eval": {"x": xe[:65, ..., None], "y": ye[:65]}}
    names = args.configs.split(",") if args.configs else list(CONFIGS)
    results = {name: run(name, CONFIGS[name], data) for name in names}
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "size": ctx.size, "backend": ctx.backend,
                   "controller": getattr(ctx, "controller", "local"), "results": results}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--configs", default="")
    main(parser.parse_args())
