"""Random tiny programs: schedules (keys, None values, batch sizes, valid or not), ops switched on
and off, random data sizes. Each either trains or raises ConfigError before its first step.

Used in-process by tests/test_property.py (hypothesis draws the cases) and on several ranks by
running this file under horovodrun (a handful of seeded cases, the same on every rank).
"""

import argparse
import json
import os
import random

import keras
import numpy as np

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import Minmax, Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler


def tiny_model():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def run_case(case: dict) -> str:
    """Build and fit the program described by ``case``; "ok" or "ConfigError: ..."."""
    model = None
    try:
        n = case["samples"]
        rng = np.random.default_rng(0)
        data = {"train": {"x": rng.integers(0, 255, (n, 8, 8, 1), dtype=np.uint8),
                          "y": rng.integers(0, 10, n)}}
        batch = case["batch"]
        batch = Scheduler(batch) if isinstance(batch, dict) else batch
        resize = {k: None if v is None else Resize(inputs="x", size=(v, v), outputs="x")
                  for k, v in case["resize"].items()}
        norm = {k: None if v is None else (Minmax(inputs="x", outputs="x") if v == "minmax"
                                           else Scale(inputs="x", scalar=1 / 255, outputs="x"))
                for k, v in case["norm"].items()}
        ops = [Scheduler(resize) if resize else Resize(inputs="x", size=(8, 8), outputs="x"),
               Scheduler(norm) if norm else Scale(inputs="x", scalar=1 / 255, outputs="x")]
        pipeline = fe.Pipeline(data=data, batch_size=batch, ops=ops)
        model = fe.build(tiny_model, model_name="m", loss_name="ce")
        before = [w.copy() for w in model.get_weights()]
        network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
        est = fe.Estimator(pipeline=pipeline, network=network, epochs=case["epochs"],
                           verbose=False)
        summary = est.fit()
    except ConfigError as err:
        if model is not None:  # raised before training: not one step was taken
            assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        return f"ConfigError: {err}"
    assert len(summary.records) == case["epochs"]
    for record in summary.records:
        assert record.steps == n // record.global_batch >= 1
        assert np.isfinite(list(record.train_loss.values())).all()
    return "ok"


def random_case(rng: random.Random) -> dict:
    """A case as plain data, drawn from ``rng``."""
    def schedule(values):
        keys = rng.sample(range(3), rng.randint(0, 2))
        return {k: rng.choice(values) for k in keys}

    batch = rng.choice([rng.randint(-1, 40), schedule([None, 1, 2, 5, 16, 33, 0])])
    if batch == {}:
        batch = 4
    return {"samples": rng.randint(1, 50), "batch": batch, "epochs": rng.randint(1, 2),
            "resize": schedule([None, 6, 8, 10]), "norm": schedule([None, "minmax", "scale"])}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", type=int, default=6)
    args = parser.parse_args()
    ctx = fe.distributed.get_context()
    rng = random.Random(2026)
    cases = [random_case(rng) for _ in range(args.cases)]
    cases[0]["batch"] = 1  # global batch below the number of ranks
    cases[1].update(batch={0: 4}, samples=40, resize={}, norm={})  # a valid program
    outcomes = [run_case(case) for case in cases]
    with open(os.path.join(args.out, f"rank{ctx.rank}.json"), "w") as f:
        json.dump({"rank": ctx.rank, "cases": cases, "outcomes": outcomes}, f)
