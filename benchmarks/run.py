"""The localhost scaling figures of docs/benchmarks.md: fe-bench on this machine, np 1 and 2.

    .venv/bin/python benchmarks/run.py                  # every figure set below, in turn
    .venv/bin/python benchmarks/run.py --set lenet_mpirun
    .venv/bin/python benchmarks/run.py --tiny           # seconds-scale sizes

A thin wrapper: everything is `fe-bench` (fe_dist/bench); this only fixes the arguments the
figures were measured with and writes each set to benchmarks/results/localhost_<set>/. Each rank
runs one thread; ResNet-50 is reduced to 64 px and batch 4 per rank so 2 CPU cores run it in
minutes; LeNet runs at the seed's sizes. Rounds (``--repeats``) interleave the variants.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This checkout's fe_dist, here and in every rank fe-bench launches.
sys.path.insert(0, str(HERE.parent))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent),
                                                         os.environ.get("PYTHONPATH")]))
os.environ.pop("FE_DIST_BACKEND", None)  # the launcher decides
from fe_dist.bench.cli import run as fe_bench  # noqa: E402

LENET = ["--workload", "lenet", "--batch", "32", "--steps", "60", "--repeats", "3"]
RESNET50 = ["--workload", "resnet50", "--image-size", "64", "--batch", "4", "--steps", "8",
            "--repeats", "2"]
SETS = {  # name: fe-bench arguments (besides --np, --threads and --out)
    "lenet_horovodrun": [*LENET, "--launcher", "horovodrun"],
    "lenet_mpirun": [*LENET, "--launcher", "mpirun"],
    "resnet50_horovodrun": [*RESNET50, "--launcher", "horovodrun"],
}
TINY = ["--workload", "lenet", "--batch", "2", "--steps", "4"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS))
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results"))
    args, rest = parser.parse_known_args()
    status = 0
    for name in ["tiny"] if args.tiny else (args.set or list(SETS)):
        status |= fe_bench(["--np", "1,2", "--threads", "1", *(TINY if args.tiny else SETS[name]),
                            "--out", str(Path(args.out) / f"localhost_{name}"), *rest])
    sys.exit(status)


if __name__ == "__main__":
    main()
