"""The smallest fe_dist job: each rank joins the run, the ranks gather their ranks, and each
writes rank<r>.json with its rank, the world size, its backend and the gathered ranks.

--exit-code N: every rank exits with status N instead, after importing fe_dist (a failing job).
"""

import argparse
import json
import os
import sys

import fe_dist as fe

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--exit-code", type=int, default=0)
    args = parser.parse_args()
    if args.exit_code:
        sys.exit(args.exit_code)
    ctx = fe.distributed.get_context()
    ranks = ctx.allgather_object(ctx.rank, name="hello")
    print(f"hello from rank {ctx.rank} of {ctx.size}", flush=True)
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "size": ctx.size, "backend": ctx.backend,
                   "ranks": ranks}, f)
