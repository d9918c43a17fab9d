"""Time and optimizer steps to a target eval accuracy: `AdaptiveBatch` (untuned defaults) against
a sweep of fixed batches and a hand-written progressive schedule.

Two tasks: the bundled MNIST sample (small CNN) and a CIFAR-shaped task generated here (32x32x3,
10 classes: a smooth random template per class, shifted and under noise). Every configuration
trains with SGD (momentum 0.9); the fixed and progressive batches scale the learning rate
linearly from 0.02 at batch 32 (Goyal et al.), the adaptive run follows AdaScale's gain ratio
from the same 0.02 at its initial 32. Each configuration runs with several seeds on one process,
then the whole sweep again on 2 ranks (this script under horovodrun, one launch). Time is the
training wall time (sum of the epochs' train seconds) until the first eval at or above the
target; the machine is shared and noisy, so compare within a table: each figure is the mean
(± half the range) over seeds.

    python benchmarks/adaptive_batch.py [--seeds 3] [--epochs 6] [--out benchmarks/results]

writes adaptive_batch.json, adaptive_batch.md and adaptive_batch.png (B_noise and the chosen
batch per epoch of the adaptive runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import fe_dist as fe  # noqa: E402
from fe_dist.dataset import mnist  # noqa: E402
from fe_dist.op.tensorop import Scale  # noqa: E402
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy  # noqa: E402
from fe_dist.op.tensorop.model import ModelOp  # noqa: E402
from fe_dist.schedule import AdaptiveBatch, LRSchedule, Scheduler  # noqa: E402

LR, BASE = 0.02, 32
TARGETS = {"mnist": 0.96, "cifar_shaped": 0.90}
FIXED = [32, 64, 128, 256]


def task_data(task: str) -> tuple[dict, tuple]:
    if task == "mnist":
        (x, y), (xe, ye) = mnist.load_data()
        return {"train": {"x": x[..., None], "y": y}, "eval": {"x": xe[..., None], "y": ye}}, \
            (28, 28, 1)
    rng = np.random.default_rng(123)
    coarse = rng.normal(size=(10, 8, 8, 3))
    templates = np.kron(coarse, np.ones((1, 4, 4, 1)))  # smooth 32x32x3 patterns

    def make(n: int, seed: int) -> dict:
        r = np.random.default_rng(seed)
        y = r.integers(0, 10, n)
        shifts = r.integers(-3, 4, size=(n, 2))
        x = np.stack([np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(y, shifts)])
        x = x * r.uniform(0.5, 1.5, size=(n, 1, 1, 1)) + r.normal(scale=3.5, size=x.shape)
        return {"x": np.clip(x * 32 + 128, 0, 255).astype("uint8"), "y": y}

    return {"train": make(4000, 1), "eval": make(1000, 2)}, (32, 32, 3)


def cnn(shape: tuple) -> keras.Model:
    layers = keras.layers
    return keras.Sequential([
        keras.Input(shape), layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
        layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax")])


def configurations(epochs: int) -> dict:
    third = max(epochs // 4, 1)
    configs = {f"fixed {b}": (b, LRSchedule(LR, reference_batch=BASE)) for b in FIXED}
    configs["progressive 32-64-128"] = (Scheduler({0: 32, third: 64, 2 * third: 128}),
                                        LRSchedule(LR, reference_batch=BASE))
    configs["adaptive (untuned)"] = (AdaptiveBatch(initial=BASE, maximum=1024,
                                                   lr_rule="adascale"), None)
    return configs


def run(task: str, name: str, seed: int, epochs: int) -> dict:
    data, shape = task_data(task)
    batch, lr = configurations(epochs)[name]
    keras.utils.set_random_seed(seed)
    pipeline = fe.Pipeline(data=data, batch_size={"train": batch, "eval": 500},
                           ops=[Scale(inputs="x", scalar=1 / 255, outputs="x")])
    model = fe.build(lambda: cnn(shape), model_name="cnn", loss_name="ce", lr=lr,
                     optimizer=lambda: keras.optimizers.SGD(LR, momentum=0.9))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=seed,
                           verbose=False).fit()
    seconds, steps, reached = 0.0, 0, None
    for r in summary.records:
        seconds += r.seconds
        steps += r.steps
        if reached is None and r.eval_metrics.get("ce_accuracy", 0.0) >= TARGETS[task]:
            reached = {"epoch": r.epoch, "seconds": seconds, "steps": steps}
    return {"task": task, "config": name, "seed": seed, "reached": reached,
            "best_accuracy": max(r.eval_metrics.get("ce_accuracy", 0.0) for r in summary.records),
            "batches": [r.global_batch for r in summary.records],
            "noise": [r.noise_scale for r in summary.records],
            "total_train_seconds": sum(r.seconds for r in summary.records),
            # Epoch 0 runs at batch 32 in "fixed 32" and in the adaptive run: their ratio is
            # the cost of measuring (on one process, the second backward pass).
            "first_epoch_seconds": summary.records[0].seconds}


def sweep(seeds: int, epochs: int) -> list[dict]:
    results = []
    for task in TARGETS:
        for seed in range(seeds):  # seeds outermost: drift on a shared machine hits all alike
            for name in configurations(epochs):
                results.append(run(task, name, seed, epochs))
                if fe.distributed.get_context().is_chief:
                    r = results[-1]
                    print(f"{task} {name} seed {seed}: {r['reached']} best "
                          f"{r['best_accuracy']:.4f} batches {r['batches']}", flush=True)
    return results


def table(results: list[dict], ranks: int) -> list[str]:
    lines = [f"| task ({ranks} rank{'s' if ranks > 1 else ''}) | configuration | reached | "
             "seconds to target | steps to target | vs best fixed (seconds) |", "|---|---|---|---|---|---|"]
    for task in TARGETS:
        rows = {}
        for name in dict.fromkeys(r["config"] for r in results):
            runs = [r for r in results if r["task"] == task and r["config"] == name]
            hit = [r["reached"] for r in runs if r["reached"]]
            rows[name] = (len(hit), len(runs), [h["seconds"] for h in hit],
                          [h["steps"] for h in hit])
        full = {n: np.mean(s) for n, (k, m, s, _) in rows.items()
                if n.startswith("fixed") and k == m}
        best = min(full, key=full.get) if full else None
        for name, (k, m, secs, steps) in rows.items():
            spread = (lambda v: f"{np.mean(v):.1f} ± {(max(v) - min(v)) / 2:.1f}") if secs else \
                (lambda v: "-")
            ratio = f"{np.mean(secs) / full[best]:.2f}" if secs and best and k == m else "-"
            label = f"{name} (best fixed)" if name == best else name
            lines.append(f"| {task} (target {TARGETS[task]}) | {label} | {k}/{m} | "
                         f"{spread(secs)} | {spread(steps)} | {ratio} |")
    fixed = [r["first_epoch_seconds"] for r in results if r["config"] == "fixed 32"]
    adaptive = [r["first_epoch_seconds"] for r in results if r["config"].startswith("adaptive")]
    if fixed and adaptive:
        lines += ["", f"Cost of measuring the noise scale ({ranks} rank(s)): epoch 0 at batch 32 "
                      f"takes {np.mean(adaptive) / np.mean(fixed):.2f}x the time of the fixed-32 "
                      "run's epoch 0 (first-step compilation included in both)."]
    return lines


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, TARGETS):
        for r in results:
            if r["task"] == task and r["config"].startswith("adaptive"):
                epochs = range(len(r["batches"]))
                ax.plot(epochs, r["noise"], "o-", label=f"B_noise, seed {r['seed']}")
                ax.step(epochs, r["batches"], where="post", linestyle="--",
                        label=f"batch, seed {r['seed']}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{task}: noise scale (end of epoch) and chosen batch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one of the ranks of the 2-rank sweep
        results = sweep(args.seeds, args.epochs)
        if fe.distributed.get_context().is_chief:
            Path(args.worker).write_text(json.dumps(results))
        return
    os.environ["FE_DIST_BACKEND"] = "local"
    single = sweep(args.seeds, args.epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    worker_file = out / "adaptive_batch_2ranks.json"
    env = {**os.environ, "FE_DIST_THREADS": "1"}
    env.pop("FE_DIST_BACKEND")
    subprocess.run([str(Path(sys.executable).parent / "horovodrun"), "-np", "2", "-H",
                    "localhost:2", "--gloo", sys.executable, __file__, "--seeds", str(args.seeds),
                    "--epochs", str(args.epochs), "--worker", str(worker_file)],
                   check=True, env=env)
    double = json.loads(worker_file.read_text())
    worker_file.unlink()
    (out / "adaptive_batch.json").write_text(json.dumps({"1": single, "2": double}, indent=1))
    load = os.getloadavg()
    md = [f"Measured by `python benchmarks/adaptive_batch.py --seeds {args.seeds} --epochs "
          f"{args.epochs}` (load average at the end {load[0]:.1f}).", "",
          *table(single, 1), "", *table(double, 2)]
    (out / "adaptive_batch.md").write_text("\n".join(md) + "\n")
    plot(single, out / "adaptive_batch.png")
    print("\n".join(md))


if __name__ == "__main__":
    main()
