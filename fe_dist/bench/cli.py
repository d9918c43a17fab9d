"""``fe-bench``: scaling benchmarks of fe_dist on your own machines.

    fe-bench --hosts host1:4,host2:4 --np 1,2,4,8 --workload resnet50 --out results/ [--gpu]
    fe-bench --np 1,2 --workload lenet,resnet50 --image-size 64 --batch 4 --steps 6 --out r/
    fe-bench worker --workload resnet50 --batch 32 --steps 50   # each rank, under any launcher
    fe-bench report job.log [more.log ...] --out results/        # figures from such jobs

For each workload and each ``--np`` it launches, in turn, the fe_dist program (fixed and
progressive schedule), the hand-written Horovod reference loop and the communication-free loop,
and writes results.json, results.md and scaling.png to ``--out`` (each launch's log under
``--out/logs``). A launch that fails is reported with its error and the others still run; a
host that does not answer ssh ends the command before any launch, naming it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from fe_dist.bench import launch as bl
from fe_dist.bench import report
from fe_dist.bench.results import VARIANTS, RunResult, merge, parse_lines
from fe_dist.bench.workloads import SCALINGS, SCHEDULES, WORKLOADS, get_workload
from fe_dist.errors import ConfigError

DEFAULTS = {  # --batch and --steps when not given: (batch, steps) on CPU and on GPU
    "resnet50": ((4, 8), (64, 50)), "cifar_resnet": ((32, 20), (128, 100)),
    "lenet": ((32, 30), (128, 100)),
}


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of positive ints (e.g. 1,2,4)")
    return values


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(choices)}")
        return values
    return parse


def _per_workload(text: str) -> dict[str, int]:
    """``64`` (every workload) or ``resnet50=64,lenet=28``; key "" is every workload's."""
    out: dict[str, int] = {}
    for item in filter(None, (v.strip() for v in text.split(","))):
        name, _, value = item.rpartition("=")
        if name and name not in WORKLOADS:
            raise argparse.ArgumentTypeError(f"{item!r}: unknown workload {name!r}")
        try:
            out[name] = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not N or workload=N") from None
        if out[name] < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: must be positive")
    return out


def _for(values: dict[str, int] | None, workload: str) -> int | None:
    values = values or {}
    return values.get(workload, values.get(""))


def parser() -> argparse.ArgumentParser:
    """``fe-bench``'s command line (the run mode)."""
    p = argparse.ArgumentParser(prog="fe-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Modes: 'fe-bench worker --help', 'fe-bench report --help'.")
    p.add_argument("--hosts", default=None,
                   help="host:slots,... (default localhost:<largest --np>)")
    p.add_argument("--np", type=_ints, default=[1, 2], help="world sizes, e.g. 1,2,4,8")
    p.add_argument("--workload", type=_names(tuple(WORKLOADS)), default=["lenet"],
                   help=f"comma-separated: {', '.join(WORKLOADS)}")
    p.add_argument("--schedules", type=_names(SCHEDULES), default=list(SCHEDULES))
    p.add_argument("--scaling", type=_names(SCALINGS), default=["weak"],
                   help="weak (--batch per rank), strong (--batch global), or both")
    p.add_argument("--variants", type=_names(VARIANTS), default=list(VARIANTS))
    p.add_argument("--out", default="fe-bench-results")
    p.add_argument("--launcher", default="horovodrun", choices=bl.LAUNCHERS)
    p.add_argument("--network-interface", default=None,
                   help="the interface carrying the traffic (horovodrun --network-interface, "
                        "mpirun's btl/oob_tcp_if_include, NCCL_SOCKET_IFNAME)")
    p.add_argument("--spread", action="store_true",
                   help="place each size's ranks evenly over all hosts (default: fill the "
                        "first hosts' slots first, as horovodrun does)")
    p.add_argument("--launcher-args", default="",
                   help="more launcher arguments, one string (e.g. \"--mca plm_rsh_agent "
                        "/path/ssh\")")
    p.add_argument("--image-size", type=_per_workload, default=None,
                   help="the fixed schedule's px (default: 224 resnet50, 32 cifar, 28 lenet); "
                        "the progressive ramp scales with it. N, or per workload: "
                        "resnet50=64,lenet=28 (as --batch and --steps)")
    p.add_argument("--batch", type=_per_workload, default=None,
                   help="base batch (see --scaling)")
    p.add_argument("--steps", type=_per_workload, default=None,
                   help="steps of the largest-batch phase (default: per workload, CPU/GPU)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per phase")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of every size's launches, the variants interleaved in each "
                        "round; the report gives medians and each ratio's median over the "
                        "rounds (a shared machine drifts by tens of per cent in minutes)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads per rank (FE_DIST_THREADS; default: cores / ranks "
                        "per host)")
    p.add_argument("--gpu", action="store_true",
                   help="one rank per GPU (give each host as many slots as GPUs), NCCL for the "
                        "allreduce (Horovod built with HOROVOD_GPU_OPERATIONS=NCCL), memory "
                        "growth on")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per launch")
    p.add_argument("--dry-run", action="store_true", help="print the launch commands only")
    return p


def worker_args(args: argparse.Namespace, workload: str, variant: str, scaling: str) -> list[str]:
    """The worker's arguments for one launch."""
    batch, steps = resolved_sizes(args, workload)
    out = ["--variant", variant, "--workload", workload, "--schedules", ",".join(args.schedules),
           "--scaling", scaling, "--batch", str(batch), "--steps", str(steps),
           "--warmup", str(args.warmup)]
    if _for(args.image_size, workload):
        out += ["--image-size", str(_for(args.image_size, workload))]
    if args.gpu:
        out.append("--gpu")
    return out


def resolved_sizes(args: argparse.Namespace, workload: str) -> tuple[int, int]:
    """(batch, steps): the flags, else the workload's defaults for CPU or GPU."""
    cpu, gpu = DEFAULTS[workload]
    batch, steps = gpu if args.gpu else cpu
    return _for(args.batch, workload) or batch, _for(args.steps, workload) or steps


def launches(args: argparse.Namespace) -> list[tuple[str, str, str, int, int]]:
    """(workload, variant, scaling, np, round) in run order; np=1 once (weak and strong
    coincide). The rounds of one size follow each other, each round running every variant, so
    a ratio of two variants compares launches minutes apart at most."""
    out = []
    for workload in args.workload:
        for np_ in sorted(set(args.np)):
            for round_ in range(args.repeats):
                for scaling in (args.scaling[:1] if np_ == 1 else args.scaling):
                    out += [(workload, v, scaling, np_, round_) for v in args.variants]
    return out


def mpi_version() -> str | None:
    """The MPI library's own version line (from ``mpirun --version``), if there is one."""
    try:
        text = subprocess.run([bl._launcher_binary("mpirun"), "--version"], capture_output=True,
                              text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return text.splitlines()[0].strip() if text.strip() else None


def run(argv: list[str] | None = None) -> int:
    """The run mode; the exit status (1 when a launch failed)."""
    args = parser().parse_args(argv)
    for w in args.workload:
        get_workload(w)
    if args.repeats < 1:
        raise ConfigError(f"fe-bench --repeats {args.repeats}: give 1 or more rounds.")
    hosts = bl.parse_hosts(args.hosts or f"localhost:{max(args.np)}")
    for np_ in args.np:
        bl.hosts_for(hosts, np_, args.spread)
    spec = bl.LaunchSpec(launcher=args.launcher, hosts=hosts, interface=args.network_interface,
                         gpu=args.gpu, threads=args.threads,
                         extra=tuple(shlex.split(args.launcher_args)), spread=args.spread)
    plan = [(w, v, s, n, r, bl.command(spec, n, worker_args(args, w, v, s)))
            for w, v, s, n, r in launches(args)]
    if args.dry_run:
        env = " ".join(f"{k}={v}" for k, v in bl.launch_env(spec).items())
        for *_, cmd in plan:
            print(f"{env} {shlex.join(cmd)}")
        return 0
    started, load_at_start = time.monotonic(), os.getloadavg()[0]
    bl.check_reachable(hosts)
    out = Path(args.out)
    runs: list[RunResult] = []
    for workload, variant, scaling, np_, round_, cmd in plan:
        name = f"{workload}_{variant}_{scaling}_np{np_}" + (f"_r{round_}" if args.repeats > 1
                                                             else "")
        print(f"[fe-bench] {name}: {shlex.join(cmd)}", flush=True)
        result = bl.run(cmd, spec, np_, args.timeout, out / "logs" / f"{name}.log")
        result.variant, result.workload = result.variant or variant, result.workload or workload
        result.scaling, result.round = result.scaling or scaling, round_
        if result.ok:
            best = max((p.samples_per_sec for p in result.phases), default=0)
            print(f"[fe-bench] {name}: ok in {result.wall_seconds:.0f} s "
                  f"(up to {best:.1f} samples/s)", flush=True)
        else:
            print(f"[fe-bench] {name}: FAILED: {result.error[:2000]}", flush=True)
        runs.append(result)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "fe-bench " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{os.cpu_count()} cores ({platform.machine()}, {platform.system()}) "
                       f"on the launching host, 1-minute load average {load_at_start:.1f} at the start "
                       f"and {os.getloadavg()[0]:.1f} at the end",
            "launcher": args.launcher, "interface": args.network_interface,
            "hosts": [f"{h.name}:{h.slots}" for h in hosts], "mpi": mpi_version(),
            "runtime_s": time.monotonic() - started}
    data = report.build(runs, meta)
    paths = report.write(data, out)
    print(report.markdown(data))
    print("[fe-bench] wrote " + ", ".join(map(str, paths)))
    return 0 if all(r.ok for r in runs) else 1


def report_mode(argv: list[str]) -> int:
    """``fe-bench report LOG... --out DIR``: figures from jobs run under another launcher (each
    log holds one job's output: rank 0's lines with every rank's result; several jobs of one variant and size
    are taken as rounds, as with ``--repeats``)."""
    p = argparse.ArgumentParser(prog="fe-bench report", description=report_mode.__doc__)
    p.add_argument("logs", nargs="+")
    p.add_argument("--out", default="fe-bench-results")
    args = p.parse_args(argv)
    runs = []
    for log in args.logs:
        lines = Path(log).read_text(errors="replace").splitlines()
        ranks = parse_lines(lines)
        size = ranks[0].size if ranks else 0
        result = merge(ranks, size, ["(launched by the user)", log], 0.0,
                       "\n".join(lines[-30:]))
        if not ranks:
            result.error = f"{log}: no FE_BENCH_RESULT line (did the job fail?)\n{result.error}"
        # Several logs of one variant and size are rounds of it (as --repeats makes them).
        result.round = sum((r.variant, r.workload, r.scaling, r.np) ==
                           (result.variant, result.workload, result.scaling, result.np)
                           for r in runs)
        runs.append(result)
    data = report.build(runs, {"date": datetime.date.today().isoformat(),
                               "command": "fe-bench report " + shlex.join(argv),
                               "launcher": "the user's", "machine": "see the host map"})
    paths = report.write(data, Path(args.out))
    print(report.markdown(data))
    print("[fe-bench] wrote " + ", ".join(map(str, paths)))
    return 0 if all(r.ok for r in runs) else 1


def main(argv: list[str] | None = None) -> None:
    """The ``fe-bench`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        from fe_dist.bench import worker
        try:
            worker.main(argv[1:])
        except ConfigError as err:  # named as such: fe-bench's summary of a failed launch
            sys.exit(f"fe-bench worker: ConfigError: {err}")
        return
    try:
        status = report_mode(argv[1:]) if argv[:1] == ["report"] else run(argv)
    except ConfigError as err:
        sys.exit(f"{err}")
    sys.exit(status)
