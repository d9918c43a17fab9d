"""Elastic training under `horovodrun --min-np 1 --max-np 2 --host-discovery-script ...`.

The discovery file (--hosts-file) lists two single-slot "hosts", localhost and 127.0.0.1 (both
this machine): Horovod blacklists a whole host when one of its workers fails, so a two-slot
localhost would end the job. After epoch 0 the worker on --keep-host removes the other host from
the file and the worker on the other host kills itself a moment later, in epoch 1. The remaining
rank must roll back to the last committed epoch and re-initialise on one rank (per-rank batch =
global batch). After the next epoch on one rank it puts the other host back: a new worker starts
there, and both sync to rank 0's state and finish the run on two ranks. Every rank that finishes
writes rank<r>.json.

Other --scenario values:
  kill-epoch0: the worker on the other host SIGKILLs itself at train step --kill-step of epoch 0,
      before any commit; its host stays blacklisted and the survivor finishes on one rank.
  scale-down: after epoch 0 the worker on --keep-host removes the other host from the file and
      both wait for the discovery to notice: a reset without any failure.
  reference: no events (run it as one plain process): the uninterrupted run to compare with.
  external: the events come from outside (tests/test_hosts.py kills a host's processes and edits
      the discovery file); every rank appends "<epoch> <world size> <host>" to <out>/events.txt
      after each epoch so the test knows when to act, and pauses --solo-pause s after epochs on
      one rank so the returning host can be announced before the run ends.
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


def main(args):
    fe.enable_deterministic(5)
    ctx = fe.distributed.get_context()
    est = make_estimator(n_train=args.n_train)
    est.epochs = args.epochs  # the probe's last batch size (33) holds for the extra epochs
    est.max_rank_batch = args.max_rank_batch
    restored = os.path.join(args.out, "host_restored")
    if args.scenario != "grow-back":
        est.on_epoch_end = scenario_hook(args, est)
        summary = est.fit()
        return write_report(args, ctx, est, summary)

    def on_epoch_end(record):
        if record.epoch == 0 and record.world_size == 2:
            if os.environ.get("HOROVOD_HOSTNAME") == args.keep_host:
                with open(args.hosts_file, "w") as f:
                    f.write(f"{args.keep_host}:1\n")
            else:
                threading.Timer(args.kill_delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
        if record.world_size == 1:
            if not os.path.exists(restored):
                open(restored, "w").close()
                with open(args.hosts_file, "w") as f:
                    f.write(f"{args.keep_host}:1\n127.0.0.1:1\n")
            time.sleep(args.solo_pause)  # leave the new worker time to start before the end

    est.on_epoch_end = on_epoch_end
    summary = est.fit()
    return write_report(args, ctx, est, summary)


def write_report(args, ctx, est, summary):
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        weights = {n: [w.tolist() for w in m.get_weights()] for n, m in est.network.models.items()}
        json.dump({"rank": ctx.rank, "size": ctx.size, "weights": weights,
                   "records": summary.to_dict()["records"]}, f)
    return 0


class KillAtStep:
    """A training dataset whose iteration SIGKILLs this process at step ``step``."""

    def __init__(self, ds, step):
        self.ds, self.step, self.element_spec = ds, step, ds.element_spec

    def __iter__(self):
        for i, batch in enumerate(self.ds):
            if i == self.step:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch


def scenario_hook(args, est):
    """Install the --scenario's event; return its on_epoch_end callback."""
    keep = os.environ.get("HOROVOD_HOSTNAME") == args.keep_host
    if args.scenario == "kill-epoch0" and not keep:
        get_train_dataset = est.pipeline.get_train_dataset

        def dying_train_dataset(epoch, *a, **kw):
            ds = get_train_dataset(epoch, *a, **kw)
            return KillAtStep(ds, args.kill_step) if epoch == 0 else ds

        est.pipeline.get_train_dataset = dying_train_dataset

    def on_epoch_end(record):
        if args.scenario == "external":
            # One short O_APPEND write per line: lines from the two hosts do not interleave.
            with open(os.path.join(args.out, "events.txt"), "a") as f:
                f.write(f"{record.epoch} {record.world_size} "
                        f"{os.environ.get('HOROVOD_HOSTNAME')}\n")
            if record.world_size == 1:
                time.sleep(args.solo_pause)
        if args.scenario == "scale-down" and record.epoch == 0 and record.world_size == 2:
            if keep:
                with open(args.hosts_file, "w") as f:
                    f.write(f"{args.keep_host}:1\n")
            time.sleep(args.discovery_wait)  # the discovery polls every second

    return on_epoch_end


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--hosts-file", required=True)
    parser.add_argument("--keep-host", default="localhost")
    parser.add_argument("--kill-delay", type=float, default=0.3)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--solo-pause", type=float, default=2.0)
    parser.add_argument("--scenario", default="grow-back",
                        choices=["grow-back", "kill-epoch0", "scale-down", "reference", "external"])
    parser.add_argument("--kill-step", type=int, default=5)
    parser.add_argument("--discovery-wait", type=float, default=4.0)
    parser.add_argument("--max-rank-batch", type=int, default=None)
    sys.exit(main(parser.parse_args()))
