"""The seed tutorial on many hosts: each rank writes rank<r>.json with its host and placement.

--epochs E: epochs of the seed tutorial (3: the full schedule). Reports: rank, size, local_rank,
local_size, threads, hostname, the host label fe_dist logs, the final weights' checksum per
model, and the summary records (rank 0's are the same on every rank).
"""

import argparse
import hashlib
import json
import os
import socket
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "launch"))
import fe_dist as fe  # noqa: E402
from fe_dist.distributed.context import host_label  # noqa: E402
from tutorial8_scheduler import get_estimator  # noqa: E402


def main(args):
    ctx = fe.distributed.get_context()
    est = get_estimator(epochs=args.epochs)
    summary = est.fit()
    checksums = {}
    for name, model in sorted(est.network.models.items()):
        digest = hashlib.sha1()
        for w in model.get_weights():
            digest.update(np.ascontiguousarray(w).tobytes())
        checksums[name] = digest.hexdigest()
    report = {"rank": ctx.rank, "size": ctx.size, "local_rank": ctx.local_rank,
              "local_size": ctx.local_size, "threads": ctx.threads, "backend": ctx.backend,
              "hostname": socket.gethostname(), "host": host_label(), "checksums": checksums,
              "records": [{k: v for k, v in r.items() if k in (
                  "epoch", "global_batch", "per_rank_batch", "world_size", "eval_metrics")}
                  for r in summary.to_dict()["records"]]}
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    main(parser.parse_args())
