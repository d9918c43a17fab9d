"""Allreduce across emulated hosts (tests/hosts.py): time against message size and link, and
the cost model's latency and bandwidth terms fitted to the measurements.

    .venv/bin/python benchmarks/hosts_allreduce.py          # about 5 minutes on 2 cores (root)
    .venv/bin/python benchmarks/hosts_allreduce.py --quick  # one link setting, np 2 only

1. What one veth link pushes here (a single TCP stream, h0 -> h1, unshaped).
2. For each link setting (unshaped, then tbf-limited rates below the measured one), for 2 and 4
   ranks (half on h0, half on h1), and each of Horovod/Gloo, Horovod/MPI and fe_dist's MPI
   backend: the median seconds of an allreduce of 0.5, 5 and 50 MB.
3. Per setting and backend, a least-squares fit of t = 2(N-1)/N * bytes / B + 2(N-1) * L
   (benchmarks/cost_model.py) and measured vs predicted for every point; then the 8/64/512-rank
   allreduce times from the fitted terms (a projection with fitted terms, labelled as such).

Delay: this machine's kernel has no netem, so links cannot be given added latency; L is the
latency the stack shows (veth, TCP, the library's own per-message cost). Both hosts share 2 cores,
so 4 ranks also compete for CPU: the fitted terms describe this emulation, not a cluster.
Writes benchmarks/results/hosts_allreduce.json and .md. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
import cost_model  # noqa: E402
import hosts  # noqa: E402

BIN = Path(sys.executable).parent
BACKENDS = ("horovod/gloo", "horovod/mpi", "mpi")


def _env(cluster: hosts.Cluster, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOROVOD_") and k != "FE_DIST_BACKEND"}
    env["PATH"] = f"{cluster.bin_dir}:{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update({"PYTHONPATH": str(REPO), "FE_DIST_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONUNBUFFERED": "1", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **(extra or {})})
    return env


def link_throughput(cluster: hosts.Cluster, nbytes: int = 2_000_000_000) -> float:
    """Bytes/s of one TCP stream from h0 to h1."""
    h0, h1 = cluster.hosts[:2]
    server = ("import socket,sys;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
              "socket.SO_REUSEADDR,1);s.bind(('%s',5201));s.listen(1);c,_=s.accept();n=0\n"
              "while True:\n b=c.recv(1<<20)\n if not b: break\n n+=len(b)\nprint(n)" % h1.address)
    recv = cluster.exec_in(h1, [sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    client = ("import socket,time;s=socket.create_connection(('%s',5201));b=bytes(1<<20);"
              "t=time.perf_counter();[s.sendall(b) for _ in range(%d)];s.close();"
              "print(time.perf_counter()-t)" % (h1.address, nbytes >> 20))
    send = cluster.exec_in(h0, [sys.executable, "-c", client], stdout=subprocess.PIPE, text=True)
    seconds = float(send.communicate(timeout=300)[0])
    received = int(recv.communicate(timeout=30)[0])
    return received / seconds


def launch_command(cluster: hosts.Cluster, backend: str, np_: int,
                   program: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command (run on h0) that starts ``program`` on ``np_`` ranks, half on h0 and half
    on h1, under ``backend``, and the environment it adds."""
    per_host = max(np_ // 2, 1)
    if backend == "mpi":
        return ["mpirun", "--allow-run-as-root", "-np", str(np_), "-H",
                f"h0:{per_host},h1:{per_host}", "--mca", "plm_rsh_agent",
                str(cluster.bin_dir / "ssh"), "--mca", "btl_tcp_if_include", hosts.IFACE,
                "--mca", "oob_tcp_if_include", hosts.IFACE,
                *[a for v in ("PATH", "PYTHONPATH", "FE_DIST_THREADS", "TF_CPP_MIN_LOG_LEVEL")
                  for a in ("-x", v)], *program], {}
    controller = backend.split("/")[1]
    return [str(BIN / "horovodrun"), "-np", str(np_), "-H", f"h0:{per_host},h1:{per_host}",
            f"--{controller}", "--network-interface", hosts.IFACE, *program], \
        {"FE_DIST_BACKEND": "horovod"}


def run_on_h0(cluster: hosts.Cluster, cmd: list[str], extra: dict[str, str], what: str,
              timeout: float = 600) -> str:
    """Run ``cmd`` inside h0 (the launcher runs on one of the hosts); its output, or raise."""
    proc = cluster.exec_in(cluster.hosts[0], cmd, env=_env(cluster, extra), cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        log = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError(f"{what} did not finish within {timeout} s") from None
    if proc.returncode != 0:
        # TensorFlow's start-up lines would push the ranks' own messages out of the tail.
        noise = ("oneDNN", "cuda drivers", "absl::InitializeLog")
        kept = "\n".join(line for line in log.splitlines() if not any(n in line for n in noise))
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{kept[-4000:]}")
    return log


def run_backend(cluster: hosts.Cluster, backend: str, np_: int, sizes: list[float],
                reps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "times.json"
        program = [sys.executable, str(HERE / "hosts_allreduce_worker.py"), "--out", str(out),
                   "--reps", str(reps), "--sizes", *map(str, sizes)]
        cmd, extra = launch_command(cluster, backend, np_, program)
        run_on_h0(cluster, cmd, extra, f"{backend} np={np_}")
        if not out.exists():
            raise RuntimeError(f"{backend} np={np_} wrote no times")
        result = json.loads(out.read_text())
    return {int(k): statistics.median(v) for k, v in result["times"].items()}


def fit(points: list[tuple[int, int, float]]) -> tuple[float, float]:
    """(bandwidth bytes/s, latency s) of the ring model fitted to (ranks, bytes, seconds)."""
    a = np.array([[2 * (n - 1) / n * b, 2 * (n - 1)] for n, b, _ in points])
    t = np.array([s for _, _, s in points])
    (inv_bw, lat), *_ = np.linalg.lstsq(a, t, rcond=None)
    if lat < 0:  # latency below resolution: refit bandwidth alone
        inv_bw, lat = float(np.linalg.lstsq(a[:, :1], t, rcond=None)[0][0]), 0.0
    return 1.0 / inv_bw, float(lat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    reason = hosts.available()
    if reason is not None:
        sys.exit(f"cannot emulate hosts here: {reason}")
    sizes, reps = [0.5, 5.0, 50.0], 8
    cluster = hosts.up(2)
    results: dict = {"sizes_mb": sizes, "settings": []}
    try:
        native = link_throughput(cluster)
        print(f"[bench] one TCP stream h0 -> h1, unshaped veth: {native * 8 / 1e9:.1f} Gb/s",
              flush=True)
        results["veth_gbit_s"] = native * 8 / 1e9
        rates = [None] + [r for r in (10_000, 1_000) if r * 1e6 / 8 < native]
        ranks = (2,) if args.quick else (2, 4)
        for rate in (rates[:1] + rates[-1:]) if args.quick else rates:
            cluster.shape(rate)
            label = "unshaped veth" if rate is None else f"tbf {rate / 1000:g} Gb/s"
            setting = {"link": label, "rate_mbit": rate, "backends": {}}
            for backend in BACKENDS:
                points = []
                for np_ in ranks:
                    print(f"[bench] {label}, {backend}, np={np_}", flush=True)
                    for nbytes, seconds in run_backend(cluster, backend, np_, sizes,
                                                       reps).items():
                        points.append((np_, nbytes, seconds))
                bandwidth, latency = fit(points)
                setting["backends"][backend] = {
                    "fit": {"bandwidth_gbit_s": bandwidth * 8 / 1e9, "latency_us": latency * 1e6},
                    "points": [{"ranks": n, "bytes": b, "measured_ms": s * 1e3,
                                "predicted_ms": cost_model.ring_allreduce_seconds(
                                    b, n, bandwidth, latency) * 1e3} for n, b, s in points],
                    "projection_ms_fitted": {str(w): {str(mb): cost_model.ring_allreduce_seconds(
                        mb * 1e6, w, bandwidth, latency) * 1e3 for mb in (0.49, 0.70)}
                        for w in cost_model.WORKERS}}
            results["settings"].append(setting)
    finally:
        hosts.down()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hosts_allreduce.json").write_text(json.dumps(results, indent=1))
    md = render(results)
    (out / "hosts_allreduce.md").write_text(md)
    print(md)


def render(results: dict) -> str:
    lines = [f"One TCP stream over an unshaped veth: {results['veth_gbit_s']:.1f} Gb/s.", "",
             "| link | backend | ranks | MB | measured ms | model ms (fitted) | measured / model |",
             "|---|---|---|---|---|---|---|"]
    fits = ["", "| link | backend | fitted bandwidth Gb/s | fitted latency µs | "
            "projected ms, 0.49 MB at 8 / 64 / 512 ranks (fitted terms) |", "|---|---|---|---|---|"]
    for setting in results["settings"]:
        for backend, res in setting["backends"].items():
            for p in res["points"]:
                lines.append(f"| {setting['link']} | {backend} | {p['ranks']} | "
                             f"{p['bytes'] / 1e6:.1f} | {p['measured_ms']:.2f} | "
                             f"{p['predicted_ms']:.2f} | "
                             f"{p['measured_ms'] / p['predicted_ms']:.2f} |")
            proj = res["projection_ms_fitted"]
            fits.append(f"| {setting['link']} | {backend} | {res['fit']['bandwidth_gbit_s']:.2f} | "
                        f"{res['fit']['latency_us']:.0f} | " + " / ".join(
                            f"{proj[str(w)]['0.49']:.2f}" for w in cost_model.WORKERS) + " |")
    return "\n".join(lines + fits) + "\n"


if __name__ == "__main__":
    main()
