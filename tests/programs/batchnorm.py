"""A BatchNorm model (plain or synchronised) on the bundled MNIST sample; each rank writes
rank<r>.json with a checksum of every model variable (moving statistics included) after every
epoch, the start and final variables, and the records."""

import argparse
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


def bn_model(sync: bool) -> keras.Model:
    norm = SyncBatchNormalization if sync else keras.layers.BatchNormalization
    return keras.Sequential([
        keras.Input((12, 12, 1)), keras.layers.Conv2D(4, 3), norm(momentum=0.5),
        keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(16),
        norm(momentum=0.5), keras.layers.ReLU(), keras.layers.Dense(10, activation="softmax")])


def checksum(model: keras.Model) -> str:
    h = hashlib.sha1()
    for v in model.variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return h.hexdigest()


def main(args):
    fe.enable_deterministic(3)
    ctx = fe.distributed.get_context()
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[:640, ..., None], "y": y[:640]},
            "eval": {"x": xe[:101, ..., None], "y": ye[:101]}}
    pipeline = fe.Pipeline(data=data, batch_size=Scheduler({0: 32, 1: 33}),
                           ops=[Resize(inputs="x", size=(12, 12), outputs="x"),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    model = fe.build(lambda: bn_model(args.sync), model_name="bn", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(0.1))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")],
                         gradient_compression=args.compression)
    checksums = [checksum(model)]
    start = [v.numpy().tolist() for v in model.variables if "seed_generator" not in v.path]
    est = fe.Estimator(pipeline=pipeline, network=network, epochs=2, seed=5, verbose=False,
                       on_epoch_end=lambda record: checksums.append(checksum(model)),
                       max_rank_batch=args.max_rank_batch)
    summary = est.fit()
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "size": ctx.size, "backend": ctx.backend,
                   "checksums": checksums, "start": start,
                   "variables": {v.path: v.numpy().tolist() for v in model.variables
                                 if "seed_generator" not in v.path},
                   "records": summary.to_dict()["records"]}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--compression", default=None)
    parser.add_argument("--max-rank-batch", type=int, default=None)
    main(parser.parse_args())
