"""FastEstimator 1.x ports in launch/ at a reduced size, in sequence, on one process or N ranks.

Runs launch/fe1_mnist_tf.py, fe1_t05_scheduler.py, fe1_t07_lr_scheduling.py, fe1_t04_trace.py
and fe1_cifar10_fast_tf.py (when present) through their own functions, and writes what each
reports (records, learning rates, the epochs and steps its traces saw, the files its savers
wrote) to rank<r>.json in --out.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "launch"))

import fe1_mnist_tf  # noqa: E402
import fe1_t04_trace  # noqa: E402
import fe1_t05_scheduler  # noqa: E402
import fe1_t07_lr_scheduling  # noqa: E402

from fe_dist.distributed import get_context  # noqa: E402


def records(summary):
    return [{"epoch": r.epoch, "steps": r.steps, "global_batch": r.global_batch,
             "trained_models": r.trained_models, "train_loss": r.train_loss,
             "eval_metrics": r.eval_metrics, "learning_rates": r.learning_rates}
            for r in summary.records]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    # 250: the last global batch is partial (FastEstimator trains it as one more step).
    parser.add_argument("--train-samples", type=int, default=250)
    args = parser.parse_args()
    ctx = get_context()
    n = args.train_samples
    report = {"rank": ctx.rank, "size": ctx.size}

    save_dir = tempfile.mkdtemp()
    summary, test = fe1_mnist_tf.main(["--train-samples", str(n), "--epochs", "2",
                                       "--save-dir", save_dir])
    report["mnist_tf"] = {"records": records(summary), "test": test,
                          "files": sorted(os.listdir(save_dir))}

    save_dir = tempfile.mkdtemp()
    estimator, summary = fe1_t05_scheduler.main(["--train-samples", str(n),
                                                 "--save-dir", save_dir])
    report["t05"] = {"records": records(summary), "final_lrs": estimator.final_lrs,
                     "optimizers": [e.optimizers for e in estimator.plan.epochs],
                     "files": sorted(os.listdir(save_dir))}

    # 256: whole batches, so the cosine cycle is the epoch's steps, as in the tutorial.
    history, _ = fe1_t07_lr_scheduling.epoch_wise(train_samples=256)
    history3, scheduler, cycle = fe1_t07_lr_scheduling.cosine(train_samples=256)
    report["t07"] = {"epoch_wise": records(history), "cosine": records(history3),
                     "cycle": cycle, "step_lrs": {str(k): v for k, v in
                                                  scheduler.step_lrs.items()}}

    fbeta, f1, monitor, seen = fe1_t04_trace.main(["--train-samples", str(n // 2),
                                                   "--epochs", "1"])
    report["t04"] = {"fbeta": records(fbeta), "f1": records(f1), "monitor": records(monitor),
                     "monitor_seen": seen}

    cifar = Path(__file__).resolve().parents[2] / "launch" / "fe1_cifar10_fast_tf.py"
    if cifar.exists():
        import fe1_cifar10_fast_tf
        summary = fe1_cifar10_fast_tf.main(["--train-samples", "32", "--eval-samples", "16",
                                            "--epochs", "1", "--batch-size", "16"])
        report["cifar10_fast"] = {"records": records(summary)}

    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump(report, f, default=float)


if __name__ == "__main__":
    main()
