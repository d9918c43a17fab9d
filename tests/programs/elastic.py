"""Elastic training under `horovodrun --min-np 1 --max-np 2 --host-discovery-script ...`.

After epoch 0, rank 0 removes a slot from the discovery file (--hosts-file) and rank 1 kills
itself a moment later, in epoch 1. The remaining rank must roll back to the last committed
epoch, re-initialise on one rank (per-rank batch = global batch) and finish the run. Every rank
that finishes writes rank<r>.json.
"""

import argparse
import json
import os
import signal
import sys
import threading

import fe_dist as fe
from probe import make_estimator


def main(args):
    fe.enable_deterministic(5)
    ctx = fe.distributed.get_context()
    est = make_estimator(n_train=args.n_train)

    def on_epoch_end(record):
        if record.epoch == 0 and record.world_size == 2:
            if ctx.rank == 0:
                with open(args.hosts_file, "w") as f:
                    f.write("localhost:1\n")
            else:
                threading.Timer(args.kill_delay, os.kill, (os.getpid(), signal.SIGKILL)).start()

    est.on_epoch_end = on_epoch_end
    summary = est.fit()
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "size": ctx.size,
                   "records": summary.to_dict()["records"]}, f)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--hosts-file", required=True)
    parser.add_argument("--kill-delay", type=float, default=0.3)
    parser.add_argument("--n-train", type=int, default=3000)
    sys.exit(main(parser.parse_args()))
