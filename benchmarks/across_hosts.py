"""The README's cross-host figures: fe-bench across 2 emulated hosts (tests/hosts.py), run as a
user runs it on a cluster, from one of the hosts.

    .venv/bin/python benchmarks/across_hosts.py                     # every figure set below
    .venv/bin/python benchmarks/across_hosts.py --set lenet_mpirun

Brings up h0 and h1 (network namespaces on 10.213.47.0/24 with sshd; needs root), runs
``fe-bench --hosts h0:2,h1:2 --np 1,2,4 --spread --network-interface fe47n`` inside h0 with the
emulation's ssh wrapper first on PATH (np 2: one rank per host; np 4: two), and takes the hosts
down again. Both hosts share this machine's cores, so the figures describe this emulation, not a
cluster; the cost model is fitted on its links. Sets: LeNet and ResNet-50 (reduced to 64 px,
batch 4 per rank), each under horovodrun (Gloo) and mpirun (fe_dist's MPI backend); results in
benchmarks/results/hosts_<set>/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
import hosts  # noqa: E402


SETS = {  # name: (launcher, fe-bench arguments)
    f"{workload}_{launcher}": (launcher, args)
    for workload, args in (
        ("lenet", ["--workload", "lenet", "--batch", "32", "--steps", "60", "--repeats", "3"]),
        ("resnet50", ["--workload", "resnet50", "--image-size", "64", "--batch", "4",
                      "--steps", "8"]))
    for launcher in ("horovodrun", "mpirun")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS))
    parser.add_argument("--out", default=str(HERE / "results"))
    args, rest = parser.parse_known_args()
    reason = hosts.available()
    if reason is not None:
        sys.exit(f"cannot emulate hosts here: {reason}")
    cluster = hosts.up(2)
    status = 0
    try:
        env = cluster.env({k: v for k, v in os.environ.items()
                           if k != "FE_DIST_BACKEND" and not k.startswith("HOROVOD_")})
        env["PYTHONPATH"] = str(REPO)
        for name in args.set or list(SETS):
            launcher, figure_args = SETS[name]
            extra = (["--launcher-args", f"--mca plm_rsh_agent {cluster.bin_dir / 'ssh'}"]
                     if launcher == "mpirun" else [])
            cmd = [sys.executable, "-m", "fe_dist.bench", "--hosts", "h0:2,h1:2", "--np", "1,2,4",
                   "--spread", "--network-interface", hosts.IFACE, "--launcher", launcher,
                   "--threads", "1", "--out", str(Path(args.out) / f"hosts_{name}"),
                   *figure_args, *extra, *rest]
            print(f"[across_hosts] in h0: {' '.join(cmd)}", flush=True)
            proc = cluster.exec_in(cluster.hosts[0], cmd, env=env, cwd=REPO)
            status |= proc.wait()
    finally:
        hosts.down()
    sys.exit(status)


if __name__ == "__main__":
    main()
