"""Progressive resizing and batch growth with linear LR scaling, against a fixed-batch baseline.

"Don't decay the learning rate, increase the batch size" (Smith et al. 2018) with Goyal et al.'s
linear scaling and warm-up, and fast.ai/FFCV-style progressive resizing, on the bundled MNIST
sample. Both runs train the same model (a small CNN with global pooling, so one model serves every
resolution) from the same start:

- progressive: images 20 → 24 → 28 px, global batch 32 → 64 → 128, learning rate scaled with the
  batch (1e-3 × B / 32) and warmed up over the first epoch;
- baseline: 28 px, global batch 32, learning rate 1e-3 throughout.

It prints, for each run, the wall time and the number of optimizer updates until eval accuracy
first reaches --target, and writes both histories (CSV, JSON, PNG) under --out. Runs on one
process or under horovodrun like any fe_dist program.

    python launch/progressive_batch_lr.py [--epochs 9] [--target 0.92] [--out progressive_out]
"""

import argparse
import json
import os

import keras

import fe_dist as fe
from fe_dist.dataset import mnist
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import LRSchedule, Scheduler


def cnn() -> keras.Model:
    """A small CNN for any resolution (global average pooling before the classifier)."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((None, None, 1)),
        layers.Conv2D(32, 3, activation="relu", padding="same"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu", padding="same"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu", padding="same"),
        layers.GlobalAveragePooling2D(), layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax")])


def run(progressive: bool, epochs: int, out: str) -> fe.Summary:
    keras.utils.set_random_seed(0)
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[..., None], "y": y}, "eval": {"x": xe[..., None], "y": ye}}
    third = max(epochs // 3, 1)
    if progressive:
        batch = Scheduler({0: 32, third: 64, 2 * third: 128})
        size = Scheduler({0: Resize(inputs="x", size=(20, 20), outputs="x"),
                          third: Resize(inputs="x", size=(24, 24), outputs="x"),
                          2 * third: Resize(inputs="x", size=(28, 28), outputs="x")})
        lr = LRSchedule(1e-3, reference_batch=32, warmup_epochs=1)
    else:
        batch, size, lr = 32, Resize(inputs="x", size=(28, 28), outputs="x"), LRSchedule(1e-3)
    pipeline = fe.Pipeline(data=data, batch_size=batch,
                           ops=[size, Scale(inputs="x", scalar=1 / 255, outputs="x")])
    model = fe.build(cnn, model_name="cnn", optimizer="adam", loss_name="ce", lr=lr)
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    name = "progressive" if progressive else "baseline"
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs,
                        history_dir=os.path.join(out, name)).fit()


def to_target(summary: fe.Summary, target: float) -> dict:
    seconds, updates = 0.0, 0
    for record in summary.records:
        seconds += record.seconds
        updates += record.steps
        if record.eval_metrics.get("ce_accuracy", 0.0) >= target:
            return {"reached": True, "epoch": record.epoch, "train_seconds": seconds,
                    "updates": updates, "accuracy": record.eval_metrics["ce_accuracy"]}
    return {"reached": False, "epochs": len(summary.records), "train_seconds": seconds,
            "updates": updates, "best_accuracy": max(
                r.eval_metrics.get("ce_accuracy", 0.0) for r in summary.records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.92)
    parser.add_argument("--out", default="progressive_out")
    args = parser.parse_args()
    results = {name: to_target(run(name == "progressive", args.epochs, args.out), args.target)
               for name in ("progressive", "baseline")}
    if fe.distributed.get_context().is_chief:
        print(f"\nto eval accuracy {args.target}:")
        for name, r in results.items():
            where = f"epoch {r['epoch']}" if r["reached"] else \
                f"not reached (best {r['best_accuracy']:.4f})"
            print(f"  {name:12s} {where}: {r['updates']} updates, {r['train_seconds']:.1f} s "
                  "of training")
        with open(os.path.join(args.out, "comparison.json"), "w") as f:
            json.dump({"target": args.target, **results}, f, indent=1)


if __name__ == "__main__":
    main()
