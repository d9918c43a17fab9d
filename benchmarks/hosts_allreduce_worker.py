"""One rank of benchmarks/hosts_allreduce.py: times fe_dist's allreduce of float32 buffers.

Rank 0 writes {size in bytes: [seconds of each timed call]} as JSON to --out. Each call is
preceded by a barrier, so it times the collective, not the ranks' arrival skew.
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import fe_dist as fe


def main(args: argparse.Namespace) -> None:
    ctx = fe.distributed.init()
    times: dict[int, list[float]] = {}
    for mb in args.sizes:
        nbytes = int(mb * 1e6) // 4 * 4
        x = tf.constant(np.ones(nbytes // 4, np.float32))
        reps = args.reps if nbytes < 20e6 else max(3, args.reps // 2)
        samples = []
        for i in range(reps + 2):  # two warm-up calls: connections, buffers, fusion set-up
            ctx.barrier()
            start = time.perf_counter()
            ctx.allreduce_sum([x], name=f"bench.{nbytes}")[0].numpy()
            if i >= 2:
                samples.append(time.perf_counter() - start)
        times[nbytes] = samples
    if ctx.is_chief:
        with open(args.out, "w") as f:
            json.dump({"backend": ctx.backend, "controller": getattr(ctx, "controller", ""),
                       "size": ctx.size, "times": times}, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 5, 50])
    parser.add_argument("--reps", type=int, default=8)
    main(parser.parse_args())
