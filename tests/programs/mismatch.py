"""Ranks that disagree, or a schedule that cannot run on this many ranks.

--case plan: rank 1 schedules a different batch size in epoch 1.
--case data: rank 1 has one training sample fewer.
--case content: rank 1 holds other data (same count and shapes: a stale copy on one host).
--case batch: a global batch of 1 on 2 ranks.
--case key: from epoch 1 a scheduled op reads a key that does not exist (on every rank).
Every rank must raise (not hang) and writes its error to rank<r>.json.
"""

import argparse
import json
import os
import sys

import numpy as np

import fe_dist as fe
from fe_dist.op.tensorop import Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler
from probe import tiny_model


def main(case, out_dir):
    ctx = fe.distributed.init()
    odd = ctx.rank == 1
    n = 199 if case == "data" and odd else 200
    rng = np.random.default_rng(0)
    data = {"train": {"x": rng.random((n, 12, 12, 1), dtype=np.float32),
                      "y": rng.integers(0, 10, n)}}
    if case == "content" and odd:  # a stale copy: one label changed, nothing else
        data["train"]["y"][0] = (data["train"]["y"][0] + 1) % 10
    batch = {0: 32, 1: 48 if case == "plan" and odd else 64}
    if case == "batch":
        batch = {0: 8, 1: 1}
    late_key = "missing" if case == "key" else "x"
    pipeline = fe.Pipeline(data=data, batch_size=Scheduler(batch),
                           ops=[Scheduler({0: Scale(inputs="x", scalar=1.0, outputs="x"),
                                           1: Scale(inputs=late_key, scalar=2.0, outputs="x")})])
    model = fe.build(tiny_model, model_name="m", loss_name="ce")
    network = fe.Network(ops=[ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    report = {"rank": ctx.rank}
    try:
        fe.Estimator(pipeline=pipeline, network=network, epochs=2, verbose=False).fit()
        report["error"] = None
    except Exception as err:  # noqa: BLE001 - the test reads what each rank raised
        report["error"] = type(err).__name__
        report["message"] = str(err)
    with open(os.path.join(out_dir, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f)
    return 1 if report["error"] else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True, choices=["plan", "data", "content", "batch", "key"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.exit(main(args.case, args.out))
