"""Input throughput with augmentation: the Pipeline alone (no training), one process, one thread.

    .venv/bin/python benchmarks/augment_throughput.py [--repeats 3] [--batch 64]

Iterates one epoch of the bundled MNIST training sample (4,000 images, 28x28x1 uint8, scaled to
[0, 1]) and prints samples/s, best of ``--repeats`` runs alternating between the variants, and
each variant's ratio to the plain pipeline:

- plain: Scale only;
- vectorised: + Sometimes(HorizontalFlip, 0.5), Rotate(15), CoarseDropout(1 hole of 8x8), the
  built-in ops, each run once per batch with per-sample draws;
- per-sample numpy: + the same flip and cutout (no rotation) as a user NumpyOp (numpy, one
  sample at a time through tf.numpy_function, the FastEstimator contract);
- per-sample tf.map_fn: + the same flip and cutout as TensorFlow code mapped over the samples.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("FE_DIST_THREADS", "1")

import tensorflow as tf  # noqa: E402

import fe_dist as fe  # noqa: E402
from fe_dist.dataset import mnist  # noqa: E402
from fe_dist.op.numpyop import NumpyOp  # noqa: E402
from fe_dist.op.numpyop.meta import Sometimes  # noqa: E402
from fe_dist.op.numpyop.multivariate import HorizontalFlip, Rotate  # noqa: E402
from fe_dist.op.numpyop.numpyop import DRAWS  # noqa: E402
from fe_dist.op.numpyop.univariate import CoarseDropout  # noqa: E402
from fe_dist.op.tensorop import Scale  # noqa: E402


class NumpyFlipCutout(NumpyOp):
    """Flip half the samples and cut one 8x8 hole, one sample at a time in numpy."""

    def forward(self, data, state):
        rng = state["rng"]
        if rng.random() < 0.5:
            data = data[:, ::-1]
        data = data.copy()
        top, left = rng.integers(0, data.shape[0] - 7), rng.integers(0, data.shape[1] - 7)
        data[top:top + 8, left:left + 8] = 0
        return data


class MapFnFlipCutout(NumpyOp):
    """The same, as TensorFlow code mapped over the samples (tf.map_fn)."""

    def forward_batch(self, data, state):
        u = state[DRAWS].uniform(3)

        def one(args):
            x, r = args
            x = tf.cond(r[0] < 0.5, lambda: tf.reverse(x, [1]), lambda: x)
            h, w = tf.shape(x)[0], tf.shape(x)[1]
            top = tf.cast(r[1] * tf.cast(h - 7, tf.float32), tf.int32)
            left = tf.cast(r[2] * tf.cast(w - 7, tf.float32), tf.int32)
            rows, cols = tf.range(h)[:, None], tf.range(w)[None]
            hole = (rows >= top) & (rows < top + 8) & (cols >= left) & (cols < left + 8)
            return tf.where(hole[..., None], tf.zeros_like(x), x)

        return tf.map_fn(one, (data, u), fn_output_signature=data.dtype)


VARIANTS = {
    "plain": [],
    "vectorised flip+cutout": [Sometimes(HorizontalFlip("x", "x"), 0.5),
                               CoarseDropout("x", "x", max_holes=1, max_height=8, max_width=8)],
    "vectorised flip": [Sometimes(HorizontalFlip("x", "x"), 0.5)],
    "vectorised cutout": [CoarseDropout("x", "x", max_holes=1, max_height=8, max_width=8)],
    "vectorised rotate": [Rotate("x", "x", limit=15)],
    "per-sample numpy": [NumpyFlipCutout("x", "x")],
    "per-sample tf.map_fn": [MapFnFlipCutout("x", "x")],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    ctx = fe.distributed.get_context()
    (x, y), _ = mnist.load_data()
    data = {"train": {"x": x[..., None], "y": y}}
    pipelines = {name: fe.Pipeline(data=data, batch_size=args.batch,
                                   ops=[Scale("x", 1 / 255, "x"), *ops])
                 for name, ops in VARIANTS.items()}
    best = {name: 0.0 for name in VARIANTS}
    for epoch in range(args.repeats + 1):  # epoch 0 warms up (builds and traces)
        for name, pipeline in pipelines.items():
            ds = pipeline.get_train_dataset(epoch, args.batch, ctx, seed=0)
            start, n = time.perf_counter(), 0
            for batch in ds:
                n += int(batch["x"].shape[0])
            rate = n / (time.perf_counter() - start)
            if epoch:
                best[name] = max(best[name], rate)
    print(f"batch {args.batch}, {len(x)} images 28x28x1, 1 thread; best of {args.repeats}")
    for name, rate in best.items():
        print(f"{name:22s} {rate:9.0f} samples/s   ratio to plain {rate / best['plain']:.2f}")


if __name__ == "__main__":
    main()
