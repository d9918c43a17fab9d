"""The probe schedule with a failure on one rank only, or a slow eval, for tests/test_failures.py.

--fail-step-rank R --fail-step K: on rank R a network op raises in the train step (through
    tf.py_function) at its K-th train batch, while the other ranks wait in that step's allreduce.
--fail-callback-rank R: on rank R on_epoch_end raises after epoch 0.
--slow-eval S: an eval-only network op sleeps S seconds per eval batch on every rank.
The failing rank writes the time of its failure to failed_at.txt; a rank that finishes writes
rank<r>.json.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

import fe_dist as fe
from fe_dist.op.tensorop.tensorop import TensorOp
from probe import make_estimator


class RankFault(Exception):
    pass


class UserOp(TensorOp):
    """Stands for a user's op: the identity, except that it calls ``hook()`` per batch."""

    def __init__(self, hook, name, mode):
        super().__init__(inputs="x", outputs="x", mode=mode)
        self.hook, self.name = hook, name

    def forward(self, data, state):
        x = data  # one input key: the bare tensor
        done = tf.py_function(self.hook, [], tf.float32)  # runs once per executed batch
        done.set_shape([])
        return x + 0.0 * done

    def get_config(self):
        return {"name": self.name}  # the same on every rank: the plan compares it


def main(args):
    ctx = fe.distributed.get_context()
    est = make_estimator()
    out = args.out
    batches = [0]

    def fail_at(what):
        with open(os.path.join(out, "failed_at.txt"), "w") as f:
            f.write(repr(time.time()))
        raise RankFault(f"{what} failed on rank {ctx.rank} (injected by failures.py)")

    def train_hook():
        batches[0] += 1
        if ctx.rank == args.fail_step_rank and batches[0] == args.fail_step:
            fail_at(f"train batch {batches[0]}")
        return np.float32(0)

    def eval_hook():
        time.sleep(args.slow_eval)
        return np.float32(0)

    extra = []
    if args.fail_step_rank >= 0:
        extra.append(UserOp(train_hook, "fault", "train"))
    if args.slow_eval > 0:
        extra.append(UserOp(eval_hook, "slow", "eval"))
    est.network.ops[:0] = extra  # before the ModelOp, which reads "x"

    def on_epoch_end(record):
        if record.epoch == 0 and ctx.rank == args.fail_callback_rank:
            fail_at("on_epoch_end")

    est.on_epoch_end = on_epoch_end
    summary = est.fit()
    with open(os.path.join(out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "records": summary.to_dict()["records"]}, f)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail-step-rank", type=int, default=-1)
    parser.add_argument("--fail-step", type=int, default=5)
    parser.add_argument("--fail-callback-rank", type=int, default=-1)
    parser.add_argument("--slow-eval", type=float, default=0.0)
    sys.exit(main(parser.parse_args()))
