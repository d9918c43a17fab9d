"""What Horovod's knobs, tf.data autotune, accumulation and the backend do to the per-step cost.

    .venv/bin/python benchmarks/allreduce_knobs.py [--repeats 3] [--tiny] [--out DIR]

LeNet at 32 px, global batch 64 (32 per rank), 2 ranks pinned to one thread each. Every figure
is samples/s as a fraction of the communication-free bound: the same two ranks running the
hand-written loop with the allreduce skipped and Horovod not started. Rows: the hand-written Horovod loop; fe_dist with
its defaults; each knob changed on its own (Horovod cycle time, fusion threshold, response cache,
autotune, fp16 compression, per-tensor allreduce overlapped with the backward pass, tf.data
autotune); fe_dist accumulating k = 4 micro-batches of 32 per allreduce (global batch 256); then
fe_dist on its MPI backend (mpirun, mpi4py's Allreduce from the step, no Horovod).

This machine's speed drifts by ±20 % over minutes, so runs go in rounds (every configuration
once per round, in order) and each run times ``EPOCHS`` epochs after a warm-up one; a
configuration's figure is the median over rounds of its runs' median epoch.
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
REPO = HERE.parent
BIN = Path(sys.executable).parent
TIMEOUT = 900

def _run(cmd: list[str], what: str, extra_env: dict[str, str] | None = None) -> None:
    """Run one launch of a worker with one thread per rank; raise with its output if it fails."""
    print(f"[bench] {what}", flush=True)
    env = {**os.environ, "FE_DIST_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    env.pop("FE_DIST_BACKEND", None)  # the launcher decides, unless `extra_env` says otherwise
    proc = subprocess.run(cmd, env={**env, **(extra_env or {})}, cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")


EPOCHS = 4  # per run: one warm-up epoch, then three timed
MPI = {"FE_DIST_BACKEND": "mpi"}
K4 = ["--max-rank-batch", "32"]
CONFIGS = [  # (label, worker, workload, extra args, environment)
    ("communication-free bound (hand loop, no allreduce, Horovod not started)", "hvd", "lenet64",
     ["--no-horovod"], {}),
    ("hand loop, no allreduce, Horovod started (its idle background thread)", "hvd", "lenet64",
     ["--no-allreduce"], {}),
    ("hand-written Horovod loop", "hvd", "lenet64", [], {}),
    ("fe_dist defaults (Horovod, cycle 1 ms, tf.data autotune off)", "fe", "lenet64", [], {}),
    ("fe_dist, HOROVOD_CYCLE_TIME=0.2", "fe", "lenet64", [], {"HOROVOD_CYCLE_TIME": "0.2"}),
    ("fe_dist, HOROVOD_CYCLE_TIME=5", "fe", "lenet64", [], {"HOROVOD_CYCLE_TIME": "5"}),
    ("fe_dist, HOROVOD_FUSION_THRESHOLD=0 (no fusion)", "fe", "lenet64", [],
     {"HOROVOD_FUSION_THRESHOLD": "0"}),
    ("fe_dist, HOROVOD_CACHE_CAPACITY=0 (no response cache)", "fe", "lenet64", [],
     {"HOROVOD_CACHE_CAPACITY": "0"}),
    ("fe_dist, HOROVOD_AUTOTUNE=1", "fe", "lenet64", [], {"HOROVOD_AUTOTUNE": "1"}),
    ("fe_dist, fp16 gradient compression", "fe", "lenet64", ["--compression", "fp16"], {}),
    ("fe_dist, per-tensor allreduce overlapped with the backward pass", "fe", "lenet64",
     ["--allreduce", "per_tensor"], {}),
    ("fe_dist, tf.data autotune on (Pipeline(autotune=True))", "fe", "lenet64",
     ["--autotune"], {}),
    ("fe_dist, accumulation k=4 (batch 256, micro-batch 32)", "fe", "lenet256", K4, {}),
    ("fe_dist, MPI backend (mpirun, FE_DIST_BACKEND=mpi, no Horovod)", "fe", "lenet64", [], MPI),
    ("fe_dist, MPI backend, tf.data autotune on", "fe", "lenet64", ["--autotune"], MPI),
    ("fe_dist, MPI backend + accumulation k=4", "fe", "lenet256", K4, MPI),
]


def measure(label: str, worker: str, workload: str, extra: list[str], env: dict[str, str],
            out: Path, tiny: bool, run_id: int) -> float:
    """The median samples/s over the timed epochs of one run."""
    path = out / f"knob_{run_id}.json"
    script = HERE / ("fe_worker.py" if worker == "fe" else "hvd_worker.py")
    prog = [sys.executable, str(script), "--workload", workload, "--out", str(path), *extra]
    prog += ["--tiny"] if tiny else []
    env = {**env, "FE_BENCH_EPOCHS": str(EPOCHS)}
    launcher = [str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo"]
    if env.get("FE_DIST_BACKEND") == "mpi":  # plain MPI: Open MPI's launcher, no Horovod
        launcher = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2",
                    *[a for v in ("PATH", "PYTHONPATH", "FE_DIST_THREADS", "FE_DIST_BACKEND",
                                  "FE_BENCH_EPOCHS", "TF_CPP_MIN_LOG_LEVEL")
                      for a in ("-x", v)]]
    _run(launcher + prog, label, extra_env=env)
    result = json.loads(path.read_text())
    if worker == "fe":
        rates = [r["samples_per_sec"] for r in result["records"]]
    else:
        rates = result["phases"][-1]["epoch_samples_per_sec"]
    return statistics.median(rates[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    runs: list[list[float]] = [[] for _ in CONFIGS]
    run_id = 0
    for _ in range(args.repeats):
        for values, (label, worker, workload, extra, env) in zip(runs, CONFIGS):
            values.append(measure(label, worker, workload, extra, env, out / "raw", args.tiny,
                                  run_id))
            run_id += 1
    rows = [{"config": config[0], "samples_per_sec": statistics.median(values), "runs": values}
            for config, values in zip(CONFIGS, runs)]
    bound = rows[0]["samples_per_sec"]
    for row in rows:
        row["of_bound"] = row["samples_per_sec"] / bound
    lines = ["| configuration | samples/s (median) | of the bound | runs |", "|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['samples_per_sec']:.0f} | {r['of_bound']:.2f} | "
              f"{' '.join(f'{v:.0f}' for v in r['runs'])} |" for r in rows]
    table = "\n".join(lines) + "\n"
    (out / "allreduce_knobs.json").write_text(json.dumps(rows, indent=1))
    (out / "allreduce_knobs.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
