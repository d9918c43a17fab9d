"""fe_dist on a benchmark workload (one rank of a run); rank 0 writes the figures as JSON.

    python benchmarks/fe_worker.py --workload lenet --out fe.json [--tiny]
    horovodrun -np 2 -H localhost:2 python benchmarks/fe_worker.py --workload resnet --out fe.json

Besides the per-epoch records it times the gradient allreduce of each model alone (the
context's own timing: the same grouped allreduce as a train step, on zeros, many times).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402

import fe_dist as fe  # noqa: E402
from fe_dist.bench.worker import time_gradient_allreduce  # noqa: E402
from fe_dist.op.tensorop import Resize, Scale  # noqa: E402
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy  # noqa: E402
from fe_dist.op.tensorop.model import ModelOp  # noqa: E402
from fe_dist.schedule import Scheduler  # noqa: E402


def build_estimator(name: str, tiny: bool, compression: str | None = None,
                    autotune: bool = False, allreduce: str = "grouped") -> fe.Estimator:
    spec = workloads.spec(name, tiny)
    x, y = workloads.load_data(name, tiny)
    per = workloads.EPOCHS_PER_PHASE
    models = {}
    for _, size in spec["phases"]:
        key = workloads.model_key(name, size)
        if key not in models:
            models[key] = fe.build(lambda s=size: workloads.make_model(name, s), model_name=key,
                                   optimizer="adam", loss_name="ce")
    phases = list(enumerate(spec["phases"]))
    pipeline = fe.Pipeline(
        data={"train": {"x": x, "y": y}},
        batch_size=Scheduler({i * per: batch for i, (batch, _) in phases}),
        ops=[Scheduler({i * per: Resize(inputs="x", size=(s, s), outputs="x")
                        for i, (_, s) in phases}),
             Scale(inputs="x", scalar=1.0 / 255, outputs="x")],
        autotune=autotune)
    network = fe.Network(ops=[
        Scheduler({i * per: ModelOp(inputs="x", model=models[workloads.model_key(name, s)],
                                    outputs="p") for i, (_, s) in phases}),
        SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")],
        gradient_compression=compression, allreduce=allreduce)
    return fe.Estimator(pipeline=pipeline, network=network, epochs=len(phases) * per,
                        verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True, choices=sorted(workloads.WORKLOADS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--compression", choices=["fp16"], default=None)
    parser.add_argument("--max-rank-batch", type=int, default=None)
    parser.add_argument("--autotune", action="store_true", help="tf.data autotune on")
    parser.add_argument("--allreduce", choices=["grouped", "per_tensor"], default="grouped")
    args = parser.parse_args()
    ctx = fe.distributed.get_context()
    est = build_estimator(args.workload, args.tiny, args.compression, args.autotune,
                          args.allreduce)
    est.max_rank_batch = args.max_rank_batch
    summary = est.fit()
    models = est.network.models
    allreduce = {name: time_gradient_allreduce(ctx, m, 5 if args.tiny else 50)
                 for name, m in sorted(models.items())}
    if ctx.is_chief:
        result = {
            "workload": args.workload, "world_size": ctx.size, "threads": ctx.threads,
            "records": summary.to_dict()["records"],
            "gradient_bytes": {n: int(sum(np.prod(v.shape) * 4 for v in m.trainable_variables))
                               for n, m in models.items()},
            "gradient_tensors": {n: len(m.trainable_variables) for n, m in models.items()},
            "allreduce_seconds": allreduce,
        }
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
