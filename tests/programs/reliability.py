"""The probe schedule with checkpoints, for the resume, kill and stall tests.

--stop-after K: raise after epoch K (its checkpoint written): an interrupted run.
--resume: fit(resume=True) from --ckpt.
--kill-rank R: rank R SIGKILLs itself --kill-delay seconds into epoch 1.
--stall-rank R: rank R sleeps for good after epoch 0, so the others wait in epoch 1's allreduce.
--max-rank-batch M: Estimator(max_rank_batch=M).
--pause-after-epoch0 S: every rank sleeps S seconds after epoch 0 (its checkpoint written), so a
    test can cut a host's link while the job runs.
Each finishing rank writes rank<r>.json: records without timings, and the final weights.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time

import fe_dist as fe
from probe import make_estimator

TIMING_FIELDS = ("seconds", "samples_per_sec", "eval_seconds", "timeline")


class Interrupted(Exception):
    pass


def main(args):
    fe.enable_deterministic(11)
    ctx = fe.distributed.get_context()
    est = make_estimator(n_train=args.n_train, checkpoint_dir=args.ckpt)
    est.max_rank_batch = args.max_rank_batch

    def on_epoch_end(record):
        if record.epoch == args.stop_after:
            raise Interrupted(f"stopped after epoch {record.epoch}")
        if record.epoch == 0 and args.pause_after_epoch0:
            time.sleep(args.pause_after_epoch0)
        if record.epoch == 0 and ctx.rank == args.kill_rank:
            threading.Timer(args.kill_delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        if record.epoch == 0 and ctx.rank == args.stall_rank:
            time.sleep(3600)

    est.on_epoch_end = on_epoch_end
    try:
        summary = est.fit(resume=args.resume)
    except Interrupted:
        return 3
    records = [{k: v for k, v in r.items() if k not in TIMING_FIELDS}
               for r in summary.to_dict()["records"]]
    weights = {n: [w.tolist() for w in m.get_weights()] for n, m in est.network.models.items()}
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "size": ctx.size, "records": records, "weights": weights}, f)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-after", type=int, default=-1)
    parser.add_argument("--kill-rank", type=int, default=-1)
    parser.add_argument("--kill-delay", type=float, default=0.5)
    parser.add_argument("--stall-rank", type=int, default=-1)
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--max-rank-batch", type=int, default=None)
    parser.add_argument("--pause-after-epoch0", type=float, default=0.0)
    sys.exit(main(parser.parse_args()))
