"""Time to the first step of the seed tutorial (launch/tutorial8_scheduler.py, 3 epochs, one
process), split into import, program build, plan, checks, compilation and the first step
(``after_import``: the time to the first step less the import).

    .venv/bin/python benchmarks/first_step.py [--repeats 3] [--repo A --repo B ...]

Each ``--repo`` is a checkout of fe_dist (default: this one); runs alternate between them
(A B A B ...) so a shared machine's load falls on both alike, and the medians and the ratio to
the first repo are printed. The plan/checks/compile split needs an Estimator that records
``startup_seconds`` (older checkouts show only the totals).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys, time
def age():
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        return float(f.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
origin = time.perf_counter() - age()
import importlib.util
import fe_dist
assert fe_dist.__file__.startswith(os.getcwd()), (fe_dist.__file__, os.getcwd())
imported = time.perf_counter() - origin
spec = importlib.util.spec_from_file_location("t8", sys.argv[1])
t8 = importlib.util.module_from_spec(spec); spec.loader.exec_module(t8)
est = t8.get_estimator(None, 3)
est.verbose = False
built = time.perf_counter() - origin
summary = est.fit()
rec = summary.records[0]
parts = {"import": imported, "build": built - imported}
parts.update(getattr(est, "startup_seconds", {}) or {})
parts["to_first_step"] = built + rec.timeline["first_step_end"]
# What fe_dist controls: everything after TensorFlow's import (which a loaded machine stretches
# the most).
parts["after_import"] = parts["to_first_step"] - imported
parts["epoch_seconds"] = [r.seconds for r in summary.records]
parts["trace_count"] = summary.trace_count
print("FIRST_STEP " + json.dumps(parts))
"""


def run_once(repo: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "FE_DIST_BACKEND"}
    env.update({"PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "3"})
    proc = subprocess.run([sys.executable, "-c", CHILD, str(repo / "launch" /
                                                          "tutorial8_scheduler.py")],
                          env=env, cwd=repo, capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_STEP "):
            return json.loads(line[len("FIRST_STEP "):])
    raise RuntimeError(f"{repo}: no result\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repo", action="append", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON")
    args = parser.parse_args()
    repos = args.repo or [HERE.parent]
    runs: dict[str, list[dict]] = {str(r): [] for r in repos}
    for i in range(args.repeats):
        for repo in repos:
            parts = run_once(repo)
            runs[str(repo)].append(parts)
            print(f"[first_step] {repo} run {i}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in parts.items() if isinstance(v, float)), flush=True)
    medians = {}
    for repo, rs in runs.items():
        keys = [k for k, v in rs[0].items() if isinstance(v, float)]
        medians[repo] = {k: statistics.median(r[k] for r in rs if k in r) for k in keys}
        medians[repo]["trace_count"] = rs[0]["trace_count"]
    first = medians[str(repos[0])]
    for repo, m in medians.items():
        print(f"{repo}: median " + ", ".join(f"{k} {v:.2f}" for k, v in m.items())
              + f"; over the first repo's: to_first_step "
              f"{m['to_first_step'] / first['to_first_step']:.2f}, after_import "
              f"{m['after_import'] / first['after_import']:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
