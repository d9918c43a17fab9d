"""Scaling benchmarks of fe_dist: one command, figures as JSON, a markdown table and a PNG plot.

    .venv/bin/python benchmarks/run.py                 # full run, about 8 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --tiny --out D  # seconds-scale smoke run

Measures, each rank pinned to one thread:
1. throughput per schedule phase at np = 1 and 2, and scaling efficiency T2 / (2 T1);
2. fe_dist against a hand-written Horovod loop (same model, data, batches, np = 2), and with
   fp16 gradient compression (bytes per step halved);
3. fe_dist against tf.distribute.MultiWorkerMirroredStrategy (2 workers on loopback);
4. the cost of a schedule change in the seed tutorial (epoch gaps with and without one);
5. bytes and time of the gradient allreduce per step;
6. a labelled cost-model projection to 8, 64 and 512 workers.
All ratios come from runs in this same session; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import cost_model  # noqa: E402
import workloads  # noqa: E402

BIN = Path(sys.executable).parent
TIMEOUT = 900


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "FE_DIST_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    env.pop("FE_DIST_BACKEND", None)  # the launcher decides, unless `extra` says otherwise
    return {**env, **(extra or {})}


def _run(cmd: list[str], what: str, extra_env: dict[str, str] | None = None) -> None:
    print(f"[bench] {what}", flush=True)
    proc = subprocess.run(cmd, env=_env(extra_env), cwd=REPO, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")


def _horovodrun(np_: int) -> list[str]:
    return [str(BIN / "horovodrun"), "-np", str(np_), "-H", f"localhost:{np_}", "--gloo"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_fe(workload: str, np_: int, out: Path, tiny: bool, compression: str | None = None) -> dict:
    path = out / f"fe_{workload}_np{np_}{'_' + compression if compression else ''}.json"
    prog = [sys.executable, str(HERE / "fe_worker.py"), "--workload", workload, "--out", str(path)]
    prog += (["--tiny"] if tiny else []) + (["--compression", compression] if compression else [])
    _run(prog if np_ == 1 else _horovodrun(np_) + prog,
         f"fe_dist {workload} np={np_}{' ' + compression if compression else ''}")
    return json.loads(path.read_text())


def run_hvd(workload: str, out: Path, tiny: bool) -> dict:
    path = out / f"hvd_{workload}_np2.json"
    prog = [sys.executable, str(HERE / "hvd_worker.py"), "--workload", workload, "--out",
            str(path)] + (["--tiny"] if tiny else [])
    _run(_horovodrun(2) + prog, f"hand-written Horovod loop {workload} np=2")
    return json.loads(path.read_text())


def run_mwms(workload: str, out: Path, tiny: bool) -> dict:
    print(f"[bench] MultiWorkerMirroredStrategy {workload} 2 workers", flush=True)
    path = out / f"mwms_{workload}_np2.json"
    ports = ",".join(str(p) for p in _free_ports(2))
    procs = [subprocess.Popen(
        [sys.executable, str(HERE / "mwms_worker.py"), "--workload", workload, "--index",
         str(i), "--ports", ports, "--out", str(path)] + (["--tiny"] if tiny else []),
        env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    try:
        logs = [p.communicate(timeout=TIMEOUT)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError("MultiWorkerMirroredStrategy run failed:\n" + logs[0][-3000:])
    return json.loads(path.read_text())


def run_seed(out: Path, tiny: bool) -> dict:
    path = out / "seed_np1.json"
    epochs = 2 if tiny else 4
    _run([sys.executable, str(REPO / "launch" / "tutorial8_scheduler.py"), "--epochs",
          str(epochs), "--summary", str(path)], f"seed tutorial, {epochs} epochs, np=1")
    return json.loads(path.read_text())


# -- analysis -------------------------------------------------------------------------------------
def timed_records(fe_result: dict) -> list[dict]:
    """The last (timed) epoch of each phase."""
    per = workloads.EPOCHS_PER_PHASE
    records = fe_result["records"]
    return [records[i] for i in range(per - 1, len(records), per)]


def transitions(records: list[dict], signature_epochs: list[int]) -> list[dict]:
    """Gaps between the last step of epoch e-1 and the first step of epoch e."""
    rows = []
    for prev, cur in zip(records, records[1:]):
        t_prev, t_cur = prev["timeline"], cur["timeline"]
        step = (t_cur["train_end"] - t_cur["first_step_end"]) / max(cur["steps"] - 1, 1)
        total = t_cur["first_step_end"] - t_prev["train_end"] - step
        eval_part = t_prev["eval_end"] - t_prev["train_end"]
        rows.append({"from_epoch": prev["epoch"], "to_epoch": cur["epoch"],
                     "schedule_changes": cur["epoch"] in signature_epochs,
                     "gap_s": total, "gap_without_eval_s": total - eval_part,
                     "eval_s": eval_part})
    return rows


def analyse(raw: dict) -> dict:
    results: dict = {"workloads": {}}
    for name, runs in raw["workloads"].items():
        fe1, fe2 = timed_records(runs["fe_np1"]), timed_records(runs["fe_np2"])
        fp16 = timed_records(runs["fe_np2_fp16"])
        rows = []
        for i, (r1, r2, rh) in enumerate(zip(fe1, fe2, fp16)):
            hvd = runs["hvd_np2"]["phases"][i]["samples_per_sec"]
            mwms = runs["mwms_np2"]["phases"][i]["samples_per_sec"]
            model = r2["trained_models"][0]
            grad_bytes = runs["fe_np2"]["gradient_bytes"][model]
            allreduce_s = runs["fe_np2"]["allreduce_seconds"][model]
            step_s = r2["seconds"] / r2["steps"]
            rows.append({
                "phase": i, "global_batch": r1["global_batch"],
                "per_rank_batch_np2": r2["per_rank_batch"], "model": model,
                "size": workloads.spec(name, raw["tiny"])["phases"][i][1],
                "fe_np1": r1["samples_per_sec"], "fe_np2": r2["samples_per_sec"],
                "efficiency": r2["samples_per_sec"] / (2 * r1["samples_per_sec"]),
                "hvd_np2": hvd, "fe_over_hvd": r2["samples_per_sec"] / hvd,
                "mwms_np2": mwms, "fe_over_mwms": r2["samples_per_sec"] / mwms,
                "allreduced_bytes_per_step": r2["allreduced_bytes_per_step"],
                "gradient_bytes": grad_bytes,
                "bytes_match": r2["allreduced_bytes_per_step"] == grad_bytes,
                "allreduce_ms_per_step": allreduce_s * 1e3,
                "allreduce_share_of_step": allreduce_s / step_s,
                "fe_np2_fp16": rh["samples_per_sec"],
                "fp16_over_fp32": rh["samples_per_sec"] / r2["samples_per_sec"],
                "allreduced_bytes_per_step_fp16": rh["allreduced_bytes_per_step"],
                "compute_s_per_sample_np1": 1.0 / r1["samples_per_sec"],
            })
        results["workloads"][name] = {
            "phases": rows,
            "transitions_np2": transitions(runs["fe_np2"]["records"],
                                           _signature_epochs(name, raw["tiny"])),
            "projection": _projection(rows),
        }
    seed = raw["seed"]
    results["seed_transitions"] = transitions(seed["records"], seed["signature_epochs"])
    return results


def _signature_epochs(name: str, tiny: bool) -> list[int]:
    per = workloads.EPOCHS_PER_PHASE
    return [i * per for i in range(len(workloads.spec(name, tiny)["phases"]))]


def _projection(rows: list[dict]) -> dict:
    """Cost model on the largest phase: measured compute per sample × the phase's global batch
    as the per-worker batch (weak scaling), and the measured gradient bytes."""
    row = rows[-1]
    compute = row["compute_s_per_sample_np1"] * row["global_batch"]
    return {
        "per_worker_batch": row["global_batch"], "gradient_bytes": row["gradient_bytes"],
        "compute_s_per_step_cpu_thread": compute,
        "cpu_thread": cost_model.project(compute, row["gradient_bytes"]),
        "accelerator_100x_assumed": cost_model.project(compute / 100, row["gradient_bytes"]),
    }


# -- reporting ------------------------------------------------------------------------------------
def markdown(results: dict, meta: dict) -> str:
    lines = [f"Measured {meta['date']} on {meta['machine']}; each rank pinned to one thread; "
             f"`{meta['command']}`.", ""]
    lines += ["| workload | phase (batch, px) | fe np=1 samples/s | fe np=2 samples/s | "
              "efficiency | hand Horovod np=2 | fe / Horovod | MWMS np=2 | fe / MWMS | "
              "allreduce bytes/step | allreduce ms/step | fe np=2 fp16 grads | fp16 / fp32 | "
              "fp16 bytes/step |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, w in results["workloads"].items():
        for r in w["phases"]:
            lines.append(
                f"| {name} | {r['global_batch']}, {r['size']} | {r['fe_np1']:.0f} | "
                f"{r['fe_np2']:.0f} | {r['efficiency']:.2f} | {r['hvd_np2']:.0f} | "
                f"{r['fe_over_hvd']:.2f} | {r['mwms_np2']:.0f} | {r['fe_over_mwms']:.2f} | "
                f"{r['allreduced_bytes_per_step']:,.0f} "
                f"({'=' if r['bytes_match'] else '≠'} grads) | "
                f"{r['allreduce_ms_per_step']:.2f} | {r['fe_np2_fp16']:.0f} | "
                f"{r['fp16_over_fp32']:.2f} | {r['allreduced_bytes_per_step_fp16']:,.0f} |")
    lines += ["", "Schedule change cost (seed tutorial, np=1): seconds from the end of epoch e's "
              "last step to the end of epoch e+1's first step, less one step; with and without "
              "epoch e's eval.", "",
              "| epochs | schedule changes | gap s | gap without eval s |", "|---|---|---|---|"]
    for t in results["seed_transitions"]:
        lines.append(f"| {t['from_epoch']}→{t['to_epoch']} | {t['schedule_changes']} | "
                     f"{t['gap_s']:.3f} | {t['gap_without_eval_s']:.3f} |")
    lines += ["", "Projection (cost model in benchmarks/cost_model.py, ring allreduce, no "
              "overlap, per-worker batch fixed; a projection, not a measurement):", "",
              "| workload | compute per step | network | 8 | 64 | 512 |", "|---|---|---|---|---|---|"]
    for name, w in results["workloads"].items():
        p = w["projection"]
        for label, key in (("1 CPU thread (measured)", "cpu_thread"),
                           ("100× faster (assumed accelerator)", "accelerator_100x_assumed")):
            for net, eff in p[key].items():
                lines.append(f"| {name} ({p['gradient_bytes'] / 1e6:.2f} MB grads) | {label} | "
                             f"{net} | " + " | ".join(f"{eff[n]:.2f}"
                                                      for n in cost_model.WORKERS) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2))
    series = [("fe_np1", "fe_dist np=1"), ("fe_np2", "fe_dist np=2"),
              ("hvd_np2", "hand Horovod np=2"), ("mwms_np2", "MWMS np=2")]
    for ax, name in zip(axes, names):
        rows = results["workloads"][name]["phases"]
        width = 0.2
        for j, (key, label) in enumerate(series):
            ax.bar([i + (j - 1.5) * width for i in range(len(rows))], [r[key] for r in rows],
                   width, label=label)
        for i, r in enumerate(rows):
            ax.annotate(f"eff {r['efficiency']:.2f}", (i - 0.5 * width, r["fe_np2"]),
                        ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)),
                      [f"batch {r['global_batch']}\n{r['size']} px" for r in rows])
        ax.set_ylabel("samples/s")
        ax.set_title(f"{name}: throughput per schedule phase")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny data and phases (smoke run)")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--workloads", default="lenet,resnet")
    args = parser.parse_args()
    out = Path(args.out)
    raw_dir = out / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    raw = {"tiny": args.tiny, "workloads": {}}
    for name in args.workloads.split(","):
        raw["workloads"][name] = {
            "fe_np1": run_fe(name, 1, raw_dir, args.tiny),
            "fe_np2": run_fe(name, 2, raw_dir, args.tiny),
            "hvd_np2": run_hvd(name, raw_dir, args.tiny),
            "mwms_np2": run_mwms(name, raw_dir, args.tiny),
            "fe_np2_fp16": run_fe(name, 2, raw_dir, args.tiny, "fp16"),
        }
    raw["seed"] = run_seed(raw_dir, args.tiny)
    results = analyse(raw)
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.system()}",
            "command": "python benchmarks/run.py" + (" --tiny" if args.tiny else "")}
    (out / "results.json").write_text(json.dumps({"meta": meta, **results}, indent=1))
    table = markdown(results, meta)
    (out / "results.md").write_text(table)
    plot(results, out / "scaling.png")
    print(table)
    changes = [t["gap_without_eval_s"] for t in results["seed_transitions"]
               if t["schedule_changes"]]
    if changes:
        print(f"schedule change (seed, np=1): median {statistics.median(changes):.3f} s without "
              "eval")
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'scaling.png'}")


if __name__ == "__main__":
    main()
