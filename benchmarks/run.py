"""The README's localhost scaling figures: fe-bench on this machine, np 1 and 2.

    .venv/bin/python benchmarks/run.py            # LeNet and ResNet-50 at 64 px, each rank 1 thread
    .venv/bin/python benchmarks/run.py --tiny     # seconds-scale sizes

A thin wrapper: everything is `fe-bench` (fe_dist/bench); this only fixes the arguments the
README's "Benchmarks" section was measured with and writes to benchmarks/results/localhost/.
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
from fe_dist.bench.cli import main as fe_bench  # noqa: E402
# (workload, extra arguments): ResNet-50 reduced to 64 px and batch 4 per rank so 2 CPU cores
# run it in minutes; LeNet at the seed's sizes.
RUNS = {"full": ["--workload", "lenet,resnet50", "--image-size", "resnet50=64",
                 "--batch", "lenet=32,resnet50=4", "--steps", "lenet=30,resnet50=8"],
        "tiny": ["--workload", "lenet", "--batch", "2", "--steps", "4"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "localhost"))
    args, rest = parser.parse_known_args()
    sys.argv[0] = "fe-bench"
    fe_bench(["--np", "1,2", "--threads", "1", *RUNS["tiny" if args.tiny else "full"],
              "--out", args.out, *rest])


if __name__ == "__main__":
    main()
