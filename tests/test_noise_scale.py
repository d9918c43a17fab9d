"""The gradient noise scale fe_dist measures equals a brute-force computation from per-sample
gradients (numpy, float64), step by step and over an epoch."""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist import sharding
from fe_dist.noise_scale import NoiseScale, step_estimates
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp

N, FEATURES, CLASSES, SEED = 1024, 6, 3, 4


def _problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)).astype("float32")
    w_true = rng.normal(size=(FEATURES, CLASSES))
    y = (x @ w_true + rng.gumbel(size=(N, CLASSES)) * 2.0).argmax(axis=1)
    w = (rng.normal(size=(FEATURES, CLASSES)) * 0.3).astype("float32")
    b = np.zeros(CLASSES, "float32")
    return x, y, w, b


def per_sample_gradients(x, y, w, b):
    """Each sample's gradient of its cross-entropy (softmax regression), flattened, float64."""
    logits = x.astype(np.float64) @ w + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = p - np.eye(CLASSES)[y]
    return np.concatenate([(x[:, :, None] * delta[:, None, :]).reshape(len(x), -1), delta],
                          axis=1)


def _train(x, y, w, b, batch, epochs, smoothing):
    """fe_dist on one process with a learning rate of 0 (the weights stay put), measuring."""
    model = fe.build(lambda: keras.Sequential([keras.Input((FEATURES,)),
                                               keras.layers.Dense(CLASSES, activation="softmax")]),
                     model_name="m", loss_name="ce", optimizer=lambda: keras.optimizers.SGD(0.0))
    model.set_weights([w, b])
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    network.noise = NoiseScale(smoothing)
    pipeline = fe.Pipeline(data={"train": {"x": x, "y": y}}, batch_size=batch)
    fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=SEED,
                 verbose=False).fit()
    return network.noise.read()


def test_each_step_estimate_equals_the_per_sample_computation():
    """One process: the small-batch gradients are the two halves of each batch (the shards
    two ranks hold); the smoothed estimates equal the same moving average of the paper's
    estimators computed from per-sample gradients."""
    x, y, w, b = _problem()
    batch, smoothing = 64, 0.8
    got = _train(x, y, w, b, batch, epochs=1, smoothing=smoothing)
    g = per_sample_gradients(x, y, w, b)
    order = sharding.epoch_permutation(N, SEED, 0)
    ema = np.zeros(2)
    weight = 0.0
    for step in range(N // batch):
        rows = order[step * batch:(step + 1) * batch]
        halves = [rows[sharding.rank_chunk(batch, 2, r)] for r in range(2)]
        small = np.mean([np.sum(g[h].mean(axis=0) ** 2) for h in halves])
        big = np.sum(g[rows].mean(axis=0) ** 2)
        grad_sq, trace = step_estimates(small, big, batch / 2, batch)
        ema = smoothing * ema + (1 - smoothing) * np.array([float(grad_sq), float(trace)])
        weight = smoothing * weight + (1 - smoothing)
    assert got.steps == N // batch
    assert got.grad_sq == pytest.approx(ema[0] / weight, rel=1e-4)
    assert got.trace == pytest.approx(ema[1] / weight, rel=1e-4)


def test_the_estimate_approaches_the_true_noise_scale():
    """Over many steps (weights fixed) the estimate is near the data's true B_noise =
    tr(Σ) / |G|² of the per-sample gradients: within 25 % (the data and shuffles are seeded,
    so the figure is fixed: 20.1 against 18.7 here)."""
    x, y, w, b = _problem()
    got = _train(x, y, w, b, batch=64, epochs=6, smoothing=0.995)
    g = per_sample_gradients(x, y, w, b)
    mean = g.mean(axis=0)
    true = np.sum((g - mean) ** 2) / (N - 1) / np.sum(mean ** 2)
    assert got.noise_scale == pytest.approx(true, rel=0.25)
