"""The README's cross-host figures: fe-bench across 2 emulated hosts (tests/hosts.py), run as a
user runs it on a cluster, from one of the hosts.

    .venv/bin/python benchmarks/across_hosts.py                 # horovodrun (Gloo), then mpirun
    .venv/bin/python benchmarks/across_hosts.py --launcher mpirun

Brings up h0 and h1 (network namespaces on 10.213.47.0/24 with sshd; needs root), runs
``fe-bench --hosts h0:2,h1:2 --np 1,2,4 --spread --network-interface fe47n`` inside h0 with the
emulation's ssh wrapper first on PATH (np 2: one rank per host; np 4: two), and takes the hosts
down again. Both hosts share this machine's cores, so the figures describe this emulation, not a
cluster; the cost model is fitted on its links. Results: benchmarks/results/hosts_<launcher>/.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", action="append", choices=["horovodrun", "mpirun"])
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
        for launcher in args.launcher or ["horovodrun", "mpirun"]:
            extra = (["--launcher-args", f"--mca plm_rsh_agent {cluster.bin_dir / 'ssh'}"]
                     if launcher == "mpirun" else [])
            cmd = [sys.executable, "-m", "fe_dist.bench", "--hosts", "h0:2,h1:2", "--np", "1,2,4",
                   "--spread", "--network-interface", hosts.IFACE, "--launcher", launcher,
                   "--threads", "1", "--out", str(Path(args.out) / f"hosts_{launcher}"),
                   *extra, *rest]
            print(f"[across_hosts] in h0: {' '.join(cmd)}", flush=True)
            proc = cluster.exec_in(cluster.hosts[0], cmd, env=env, cwd=REPO)
            status |= proc.wait()
    finally:
        hosts.down()
    sys.exit(status)


if __name__ == "__main__":
    main()
