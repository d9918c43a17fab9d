"""Seconds per train epoch and samples/s of the seed tutorial, single process, bundled data.

    .venv/bin/python benchmarks/seed_tutorial.py [--repeats 3] [--epochs 3]

Prints one line per epoch and run, then the median over runs. The reference is FastEstimator
1.7 on this kind of machine: 1.4-2.1 s per train epoch of 4,000 samples, 11 s wall for fit().
"""

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_tutorial():
    spec = importlib.util.spec_from_file_location("tutorial8",
                                                  REPO / "launch" / "tutorial8_scheduler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    tutorial = load_tutorial()
    runs = []
    for run in range(args.repeats):
        start = time.perf_counter()
        summary = tutorial.get_estimator(epochs=args.epochs).fit()
        wall = time.perf_counter() - start
        runs.append({"fit_wall_s": wall,
                     "epochs": [{"epoch": r.epoch, "seconds": r.seconds,
                                 "samples_per_sec": r.samples_per_sec,
                                 "accuracy": r.eval_metrics.get("my_loss_accuracy")}
                                for r in summary.records]})
        for r in runs[-1]["epochs"]:
            print(f"run {run} epoch {r['epoch']}: {r['seconds']:.2f} s/train epoch, "
                  f"{r['samples_per_sec']:.0f} samples/s, accuracy {r['accuracy']:.3f}")
        print(f"run {run}: fit() wall {wall:.2f} s (build + preflight + train + eval)")
    median = {
        "train_epoch_s": statistics.median(e["seconds"] for r in runs for e in r["epochs"]),
        "samples_per_sec": statistics.median(e["samples_per_sec"] for r in runs
                                             for e in r["epochs"]),
        "fit_wall_s": statistics.median(r["fit_wall_s"] for r in runs),
    }
    print(f"median: {median['train_epoch_s']:.2f} s per train epoch, "
          f"{median['samples_per_sec']:.0f} samples/s, fit() {median['fit_wall_s']:.2f} s "
          "(FastEstimator 1.7 here: 1.4-2.1 s per epoch, 11 s fit)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
