"""Train a small progressive program on MNIST PNG class folders (--source folder) or on the
same images as in-memory arrays (--source arrays); each rank writes rank<r>.json to --out with
its final weights and the summary records.

Epoch 0 resizes 28 -> 14 (half: a first Resize applied per image as it is decoded), epoch 1
to 20 with a larger global batch; the batch of 33 does not divide over 2 ranks.
"""

import argparse
import json
from pathlib import Path

import numpy as np

import fe_dist as fe
from fe_dist.dataset import LabeledDirDataset
from fe_dist.distributed import get_context
from fe_dist.op.tensorop import Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler


def arrays(folder: Path) -> dict:
    """The folder's images as arrays, in the folder's sample order (sorted class, file)."""
    import tensorflow as tf
    xs, ys = [], []
    for label, cls in enumerate(sorted(p.name for p in folder.iterdir())):
        for f in sorted((folder / cls).iterdir()):
            xs.append(tf.io.decode_png(f.read_bytes(), channels=1).numpy())
            ys.append(label)
    return {"x": np.stack(xs), "y": np.asarray(ys, np.int64)}


def model(size):
    import keras
    return keras.Sequential([keras.Input((size, size, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", required=True)
    parser.add_argument("--source", choices=["folder", "arrays"], required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    root = Path(args.folder)
    if args.source == "folder":
        data = {"train": LabeledDirDataset(root / "train"), "eval": LabeledDirDataset(root / "eval")}
    else:
        data = {"train": arrays(root / "train"), "eval": arrays(root / "eval")}
    pipeline = fe.Pipeline(batch_size=Scheduler({0: 32, 1: 33}), data=data,
                           ops=[Scheduler({0: Resize(inputs="x", size=(14, 14), outputs="x"),
                                           1: Resize(inputs="x", size=(20, 20), outputs="x")}),
                                Scale(inputs="x", scalar=1 / 255, outputs="x")])
    import keras
    keras.utils.set_random_seed(7)  # the same start weights in both runs
    a = fe.build(lambda: model(14), model_name="a", optimizer="sgd", loss_name="ce")
    b = fe.build(lambda: model(20), model_name="b", optimizer="sgd", loss_name="ce")
    network = fe.Network(ops=[Scheduler({0: ModelOp(inputs="x", model=a, outputs="p"),
                                         1: ModelOp(inputs="x", model=b, outputs="p")}),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=2, verbose=False).fit()
    ctx = get_context()
    report = {"size": ctx.size, "records": [r.__dict__ for r in summary.records],
              "weights": {n: [w.tolist() for w in m.get_weights()] for n, m in
                          (("a", a), ("b", b))}}
    Path(args.out, f"rank{ctx.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
