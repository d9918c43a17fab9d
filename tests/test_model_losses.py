"""`model.losses` (weight and activity regularizers, `add_loss`) train as Keras `fit` trains them.

The oracle is Keras itself: the same model, initial weights and batches trained by
``model.fit``. The N-rank side of the rule (each rank's share of the global batch, uneven
shares, micro-batches) is checked by the multi-rank probe, whose models carry the same kinds of
losses (tests/programs/probe.py, tests/test_multirank.py).
"""

import keras
import numpy as np
import pytest

import fe_dist as fe
from fe_dist import sharding
from fe_dist.network import model_losses_key
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler

N, SEED, LR = 99, 0, 0.2
BATCHES = {0: 33, 1: 16}


class BatchMeanPenalty(keras.layers.Layer):
    """A user's layer adding a batch mean to the loss (as a VAE's KL term does)."""

    def call(self, x):
        self.add_loss(0.5 * keras.ops.mean(keras.ops.square(x)))
        return x


def regularized(with_losses=True):
    reg = (lambda cls, v: cls(v)) if with_losses else (lambda cls, v: None)
    layers = [keras.Input((6,)),
              keras.layers.Dense(8, activation="tanh",
                                 kernel_regularizer=reg(keras.regularizers.L2, 0.05),
                                 bias_regularizer=reg(keras.regularizers.L1, 0.02)),
              keras.layers.ActivityRegularization(l2=0.03 if with_losses else 0.0),
              BatchMeanPenalty() if with_losses else keras.layers.Identity(),
              keras.layers.Dense(3, activation="softmax")]
    return keras.Sequential(layers)


def _data():
    rng = np.random.default_rng(1)
    return rng.normal(size=(N, 6)).astype("float32"), rng.integers(0, 3, N)


def _start_weights(model):
    rng = np.random.default_rng(5)
    return [rng.normal(size=w.shape).astype("float32") * 0.5 for w in model.get_weights()]


def keras_fit(model, x, y, epochs=2):
    """Keras' own training on fe_dist's batches: each epoch's permutation, full batches only."""
    model.compile(optimizer=keras.optimizers.SGD(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy())
    for epoch in range(epochs):
        batch = [b for e, b in sorted(BATCHES.items()) if e <= epoch][-1]
        steps = sharding.steps_per_epoch(N, batch)
        order = sharding.epoch_permutation(N, SEED, epoch)[:steps * batch]
        model.fit(x[order], y[order], batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("cap", [None, 8], ids=["whole-batch", "micro-batches-8"])
def test_model_losses_train_as_keras_fit(cap):
    x, y = _data()
    oracle = regularized()
    start = _start_weights(oracle)
    oracle.set_weights(start)
    expected = keras_fit(oracle, x, y)

    model = fe.build(regularized, model_name="m", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(LR))
    model.set_weights(start)
    pipeline = fe.Pipeline(data={"train": {"x": x, "y": y}}, batch_size=Scheduler(BATCHES))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=2, seed=SEED,
                           verbose=False, max_rank_batch=cap).fit()
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The term is reported beside the loss key (the mean per step), and moved the weights.
    term = [r.train_loss[model_losses_key("m")] for r in summary.records]
    assert all(t > 0 for t in term)
    plain = regularized(with_losses=False)
    plain.set_weights(start)
    unregularized = keras_fit(plain, x, y)
    assert max(np.abs(a - b).max() for a, b in zip(expected, unregularized)) > 1e-2


def test_only_trained_models_losses_count():
    """A frozen model's own losses (its activity regularizer on the trained model's output)
    add nothing to the trained model's objective; the trained model's L2 does."""
    x, y = _data()

    def head(activity):
        return keras.Sequential([keras.Input((8,)), keras.layers.ActivityRegularization(l2=activity),
                                 keras.layers.Dense(3, activation="softmax")])

    def body():
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(
            8, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.05))])

    # Keras: the body trains under the whole model's objective; the frozen head has no
    # activity term here, which is what fe_dist must give although its head has one.
    k_body, k_head = body(), head(0.0)
    rng = np.random.default_rng(3)
    body_start = [rng.normal(size=w.shape).astype("float32") * 0.5 for w in k_body.get_weights()]
    head_start = [rng.normal(size=w.shape).astype("float32") * 0.5 for w in k_head.get_weights()]
    k_body.set_weights(body_start)
    k_head.set_weights(head_start)
    k_head.trainable = False
    keras_fit(keras.Sequential([keras.Input((6,)), k_body, k_head]), x, y)

    f_body = fe.build(body, model_name="body", loss_name="ce",
                      optimizer=lambda: keras.optimizers.SGD(LR))
    f_head = fe.build(lambda: head(10.0), model_name="head", loss_name="ce",
                      optimizer=lambda: keras.optimizers.SGD(LR))
    f_body.set_weights(body_start)
    f_head.set_weights(head_start)
    pipeline = fe.Pipeline(data={"train": {"x": x, "y": y}}, batch_size=Scheduler(BATCHES))
    network = fe.Network([ModelOp(inputs="x", model=f_body, outputs="h"),
                          ModelOp(inputs="h", model=f_head, outputs="p", trainable=False),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=2, seed=SEED,
                           verbose=False).fit()
    for got, want in zip(f_body.get_weights(), k_body.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(f_head.get_weights(), head_start):
        np.testing.assert_array_equal(got, want)
    assert model_losses_key("head") not in summary.records[0].train_loss
