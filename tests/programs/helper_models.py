"""Models called by a user op outside any ModelOp, on several ranks.

fe_dist is imported first (so no rank prints TensorFlow's start-up lines). Each rank builds its
helper model (a feature extractor) with its own seed, so the ranks start with different
weights; fit must hand every rank rank 0's, checkpoint them, and restore them on resume (the
resumed program again builds per-rank random helpers).
"""

import argparse
import json
from pathlib import Path

import numpy as np

import fe_dist as fe  # before TensorFlow: its start-up lines are filtered
import keras
from fe_dist.op.tensorop import TensorOp
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp


class Embed(TensorOp):
    """Runs the model ``models["feat"]``; the model is reachable only through the recorded
    constructor arguments (the op keeps a closure, not the model)."""

    def __init__(self, inputs, outputs, models, mode=None):
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.run = lambda x: models["feat"](x, training=False)

    def forward(self, data, state):
        return self.run(data)


class Teacher(TensorOp):
    """Holds its model as an attribute and adds its output to the features."""

    def __init__(self, inputs, outputs, teacher, mode=None):
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.teacher = teacher

    def forward(self, data, state):
        return data + self.teacher(data, training=False)


def helpers(seed):
    keras.utils.set_random_seed(seed)
    feat = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="tanh")])
    teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(16)])
    return feat, teacher


def estimator(rank, seed, epochs, ckpt):
    feat, teacher = helpers(seed + rank)  # different weights on every rank
    keras.utils.set_random_seed(7)
    student = fe.build(lambda: keras.Sequential([keras.Input((16,)),
                                                 keras.layers.Dense(10, activation="softmax")]),
                       model_name="student", loss_name="ce")
    rng = np.random.default_rng(0)
    data = {"train": {"x": rng.random((64, 8, 8, 1), dtype=np.float32),
                      "y": rng.integers(0, 10, 64)}}
    network = fe.Network([Embed("x", "f", models={"feat": feat}),
                          Teacher("f", "f", teacher=teacher),
                          ModelOp(inputs="f", model=student, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    est = fe.Estimator(pipeline=fe.Pipeline(data=data, batch_size=16), network=network,
                       epochs=epochs, checkpoint_dir=ckpt, verbose=rank == 0)
    return est, feat, teacher, student


def weights(*models):
    return [w.tolist() for m in models for w in m.get_weights()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rank = fe.distributed.get_context().rank
    ckpt = Path(args.out) / "ckpt"
    est, feat, teacher, student = estimator(rank, 1000, 1, ckpt)
    initial = weights(feat, teacher)
    est.fit()
    report = {"initial": initial, "fitted": weights(feat, teacher), "student": weights(student)}
    est, feat, teacher, student = estimator(rank, 2000, 2, ckpt)
    report["resumed_initial"] = weights(feat, teacher)
    est.fit(resume=True)
    report["resumed"] = weights(feat, teacher)
    report["resumed_student"] = weights(student)
    (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(report))
