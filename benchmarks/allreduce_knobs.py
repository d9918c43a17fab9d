"""What Horovod's knobs do to fe_dist's per-step cost, on the small-model case.

    .venv/bin/python benchmarks/allreduce_knobs.py [--repeats 2] [--tiny] [--out DIR]

LeNet at 32 px, global batch 64 (32 per rank), 2 ranks pinned to one thread each. Every figure
is the samples/s of the timed epoch, as a fraction of the communication-free bound: the same
two ranks running the hand-written loop with the allreduce skipped. Rows: the hand-written
Horovod loop, fe_dist with default settings, with each knob changed on its own (cycle time,
fusion threshold, response cache, autotune, fp16 compression), and fe_dist accumulating k = 4
micro-batches of 32 per allreduce (global batch 256); then the same two fe_dist runs on the MPI
backend (mpirun, mpi4py's Allreduce from the step, no Horovod). Median over --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402

CONFIGS = [  # (label, worker, workload, extra args, environment)
    ("communication-free bound (hand loop, no allreduce)", "hvd", "lenet64",
     ["--no-allreduce"], {}),
    ("hand-written Horovod loop", "hvd", "lenet64", [], {}),
    ("fe_dist, Horovod defaults (cycle 1 ms)", "fe", "lenet64", [], {}),
    ("fe_dist, HOROVOD_CYCLE_TIME=0.2", "fe", "lenet64", [], {"HOROVOD_CYCLE_TIME": "0.2"}),
    ("fe_dist, HOROVOD_CYCLE_TIME=5", "fe", "lenet64", [], {"HOROVOD_CYCLE_TIME": "5"}),
    ("fe_dist, HOROVOD_CYCLE_TIME=10", "fe", "lenet64", [], {"HOROVOD_CYCLE_TIME": "10"}),
    ("fe_dist, HOROVOD_FUSION_THRESHOLD=0 (no fusion)", "fe", "lenet64", [],
     {"HOROVOD_FUSION_THRESHOLD": "0"}),
    ("fe_dist, HOROVOD_CACHE_CAPACITY=0 (no response cache)", "fe", "lenet64", [],
     {"HOROVOD_CACHE_CAPACITY": "0"}),
    ("fe_dist, HOROVOD_AUTOTUNE=1", "fe", "lenet64", [], {"HOROVOD_AUTOTUNE": "1"}),
    ("fe_dist, fp16 gradient compression", "fe", "lenet64", ["--compression", "fp16"], {}),
    ("fe_dist, accumulation k=4 (batch 256, micro-batch 32)", "fe", "lenet256",
     ["--max-rank-batch", "32"], {}),
    ("fe_dist, MPI backend (mpirun, FE_DIST_BACKEND=mpi, no Horovod)", "fe", "lenet64", [],
     {"FE_DIST_BACKEND": "mpi"}),
    ("fe_dist, MPI backend + accumulation k=4", "fe", "lenet256", ["--max-rank-batch", "32"],
     {"FE_DIST_BACKEND": "mpi"}),
]


def measure(label: str, worker: str, workload: str, extra: list[str], env: dict[str, str],
            out: Path, tiny: bool, run_id: int) -> float:
    path = out / f"knob_{run_id}.json"
    script = HERE / ("fe_worker.py" if worker == "fe" else "hvd_worker.py")
    prog = [sys.executable, str(script), "--workload", workload, "--out", str(path), *extra]
    prog += ["--tiny"] if tiny else []
    launcher = bench._horovodrun(2)
    if env.get("FE_DIST_BACKEND") == "mpi":  # plain MPI: Open MPI's launcher, no Horovod
        launcher = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
                    *[a for v in ("PATH", "PYTHONPATH", "FE_DIST_THREADS", "FE_DIST_BACKEND",
                                  "TF_CPP_MIN_LOG_LEVEL") for a in ("-x", v)]]
    bench._run(launcher + prog, label, extra_env=env)
    result = json.loads(path.read_text())
    if worker == "fe":
        return bench.timed_records(result)[-1]["samples_per_sec"]
    return result["phases"][-1]["samples_per_sec"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    rows, run_id = [], 0
    for label, worker, workload, extra, env in CONFIGS:
        values = []
        for _ in range(args.repeats):
            values.append(measure(label, worker, workload, extra, env, out / "raw", args.tiny,
                                  run_id))
            run_id += 1
        rows.append({"config": label, "samples_per_sec": statistics.median(values),
                     "runs": values})
    bound = rows[0]["samples_per_sec"]
    for row in rows:
        row["of_bound"] = row["samples_per_sec"] / bound
    lines = ["| configuration | samples/s (median) | fraction of the communication-free bound |",
             "|---|---|---|"]
    lines += [f"| {r['config']} | {r['samples_per_sec']:.0f} | {r['of_bound']:.2f} |"
              for r in rows]
    table = "\n".join(lines) + "\n"
    (out / "allreduce_knobs.json").write_text(json.dumps(rows, indent=1))
    (out / "allreduce_knobs.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
