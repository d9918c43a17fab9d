"""Programs shaped like users' own: their ops, frozen BatchNorm models, their losses, optimizer
Schedulers, variables without a gradient, and labels that do not fit the loss (one process)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop import TensorOp
from fe_dist.op.tensorop.loss import LossOp, SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler, build_plan


class AddConst(TensorOp):
    """A user op without get_config: its settings are recorded from its arguments."""

    def __init__(self, inputs, outputs, c, mode=None):
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.c = c

    def forward(self, data, state):
        return tf.cast(data, tf.float32) + self.c


class Apply(TensorOp):
    """A user op taking a function."""

    def __init__(self, inputs, outputs, fn):
        super().__init__(inputs=inputs, outputs=outputs)
        self.fn = fn

    def forward(self, data, state):
        return self.fn(data)


class Swap(TensorOp):
    """Two inputs, two outputs: forward gets a list and returns one value per output key."""

    def forward(self, data, state):
        a, b = data
        return b, a


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 6)).astype(np.float32), "y": rng.integers(0, 3, n),
            "z": np.zeros((n, 6), np.float32)}


def _dense(inputs=6, classes=3):
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(classes,
                                                                        activation="softmax")])


def _epoch_values(pipeline, epoch, key="x"):
    ds = pipeline.get_train_dataset(epoch, 16, fe.distributed.get_context())
    return np.concatenate([b[key].numpy() for b in ds])


def test_two_instances_of_a_user_op_never_share_a_dataset():
    data = _data()
    pipeline = fe.Pipeline(data={"train": data}, batch_size=16,
                           ops=[Scheduler({0: AddConst("x", "x", c=0.0),
                                           1: AddConst("x", "x", c=100.0)})])
    assert np.abs(_epoch_values(pipeline, 0)).max() < 10
    assert _epoch_values(pipeline, 1).min() > 90  # epoch 1 runs its own op


def test_ops_taking_functions_are_told_apart():
    pipeline = fe.Pipeline(data={"train": _data()}, batch_size=16,
                           ops=[Scheduler({0: Apply("x", "x", fn=lambda x: x * 0.0),
                                           1: Apply("x", "x", fn=lambda x: x * 0.0 + 1.0)})])
    assert (_epoch_values(pipeline, 0) == 0).all()
    assert (_epoch_values(pipeline, 1) == 1).all()


def test_signature_is_the_same_on_every_rank_and_names_arrays_by_content():
    table = np.arange(6, dtype=np.float32)
    a = AddConst("x", "x", c=table).signature()
    b = AddConst("x", "x", c=table.copy()).signature()  # another object, same content
    c = AddConst("x", "x", c=table + 1).signature()
    assert a == b != c
    assert "sha1=" in a and " at 0x" not in a
    assert " at 0x" not in Apply("x", "x", fn=lambda x: x).signature()
    assert "c=2.0" in AddConst("x", "x", c=2.0).signature()


def test_plan_of_a_user_program_compares_equal_when_rebuilt():
    """Each rank builds its own plan: equal programs give equal plans (rank 0's check), and a
    rank whose op holds other values is caught."""
    def program(value=1.0):
        pipeline = fe.Pipeline(data={"train": _data()}, batch_size=16,
                               ops=[AddConst("x", "x", c=np.full(6, value, np.float32)),
                                    Apply("x", "x", fn=np.tanh)])
        model = fe.build(_dense, model_name="m", loss_name="ce")
        network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                              SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
        return build_plan(pipeline, network, 2, 1, 0)

    assert program() == program()
    assert program() != program(2.0)


def test_forward_gets_the_bare_tensor_for_one_key_and_a_list_for_several():
    pipeline = fe.Pipeline(data={"train": _data()}, batch_size=16,
                           ops=[AddConst("z", "z", c=1.0),
                                Swap(inputs=("x", "z"), outputs=("x", "z"))])
    assert _epoch_values(pipeline, 0).shape == (64, 6)
    assert (_epoch_values(pipeline, 0) == 1).all()
    assert np.abs(_epoch_values(pipeline, 0, "z")).max() > 0


def _bn_model(name):
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8),
                             keras.layers.BatchNormalization(), keras.layers.Dropout(0.5),
                             keras.layers.Dense(6)], name=name)


def test_a_frozen_batchnorm_model_is_not_touched_at_all():
    """Every variable of a frozen model (moving statistics too) stays bit-identical."""
    fe.enable_deterministic(3)
    frozen = fe.build(lambda: _bn_model("f"), model_name="frozen", loss_name="unused")
    head = fe.build(_dense, model_name="head", loss_name="ce")
    before = [v.numpy() for v in frozen.variables]
    network = fe.Network([ModelOp(inputs="x", model=frozen, outputs="feat", trainable=False),
                          ModelOp(inputs="feat", model=head, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    pipeline = fe.Pipeline(data={"train": _data(), "eval": _data(32, 1)}, batch_size=16)
    fe.Estimator(pipeline=pipeline, network=network, epochs=2, verbose=False).fit()
    # Kernels, biases, gamma, beta, moving mean and variance, and Dropout's seed state (which
    # moves whenever Dropout draws a mask, i.e. runs in training mode).
    assert len(before) == 9
    for value, var in zip(before, frozen.variables):
        np.testing.assert_array_equal(value, var.numpy(), err_msg=var.path)


def test_a_frozen_model_runs_in_inference_mode():
    frozen = fe.build(lambda: _bn_model("g"), model_name="frozen2", loss_name="unused")
    x = tf.constant(_data()["x"])
    op = ModelOp(inputs="x", model=frozen, outputs="feat", trainable=False)
    out = op.forward(x, {"mode": "train"})
    np.testing.assert_array_equal(out.numpy(), frozen(x, training=False).numpy())


def _fit(network, data=None, epochs=2, batch=16, **kwargs):
    pipeline = fe.Pipeline(data=data or {"train": _data(), "eval": _data(32, 1)},
                           batch_size=batch)
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, verbose=False,
                        **kwargs).fit()


def test_an_optimizer_scheduler_builds_one_optimizer_per_entry():
    """Scheduler({0: "adam", 2: "adam"}) restarts Adam at epoch 2 (the strings are one object)."""
    model = fe.build(_dense, model_name="m", loss_name="ce",
                     optimizer=Scheduler({0: "adam", 2: "adam"}))
    first, second = model.fe_dist.optimizers
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = _fit(network, epochs=3)
    steps = [r.steps for r in summary.records]
    assert int(first.iterations.numpy()) == steps[0] + steps[1]
    assert int(second.iterations.numpy()) == steps[2]


def test_one_optimizer_object_at_two_entries_keeps_its_state():
    shared = keras.optimizers.SGD(0.1)
    model = fe.build(_dense, model_name="m", loss_name="ce",
                     optimizer=Scheduler({0: shared, 1: "sgd", 2: shared}))
    assert len(model.fe_dist.optimizers) == 2
    assert model.fe_dist.optimizer_at(2) is model.fe_dist.optimizer_at(0) is shared


class _WithSpare(keras.layers.Layer):
    """A layer holding a weight its output does not use (e.g. a head switched off)."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 3), initializer="glorot_uniform")
        self.spare = self.add_weight(shape=(3,), initializer="ones")

    def call(self, x):
        return tf.nn.softmax(x @ self.kernel)


@pytest.mark.parametrize("max_rank_batch", [None, 5])
def test_variables_without_a_gradient_are_left_alone(max_rank_batch):
    fe.enable_deterministic(1)
    model = fe.build(lambda: keras.Sequential([keras.Input((6,)), _WithSpare()]),
                     model_name="m", loss_name="ce",
                     optimizer=lambda: keras.optimizers.AdamW(0.01, weight_decay=0.5))
    spare = model.layers[0].spare
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    summary = _fit(network, max_rank_batch=max_rank_batch)
    np.testing.assert_array_equal(spare.numpy(), np.ones(3, np.float32))
    assert summary.records[0].allreduced_tensors_per_step == 1  # the kernel only


class MeanCrossentropy(LossOp):
    """A common mistake: a loss op that reduces to the batch mean itself."""

    def per_sample_loss(self, y_true, y_pred):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred))


def _classifier_network(loss_op=None, classes=3):
    model = fe.build(lambda: _dense(classes=classes), model_name="m", loss_name="ce")
    loss_op = loss_op or SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")
    return fe.Network([ModelOp(inputs="x", model=model, outputs="p"), loss_op])


def test_a_loss_reduced_to_a_scalar_is_refused_before_training():
    network = _classifier_network(MeanCrossentropy(inputs=("y", "p"), outputs="ce"))
    with pytest.raises(ConfigError) as info:
        _fit(network)
    message = str(info.value)
    for words in ("Epoch 0", "MeanCrossentropy", "'ce'", "shape []", "one value per sample",
                  "tf.reduce_mean"):
        assert words in message, (words, message)


class ClassMeanLoss(LossOp):
    """A loss reduced over the batch axis to one value per class: a fixed-length vector that is
    not per sample either."""

    def per_sample_loss(self, y_true, y_pred):
        return tf.reduce_mean(-tf.math.log(y_pred + 1e-7), axis=0)


def test_a_loss_reduced_over_the_batch_axis_is_refused_with_the_batch_axis_unknown():
    """Steps are traced with the batch axis unknown; a loss whose first axis is still known
    (here the 3 classes) cannot be one value per sample, and is refused as before."""
    network = _classifier_network(ClassMeanLoss(inputs=("y", "p"), outputs="ce"))
    with pytest.raises(ConfigError) as info:
        _fit(network)
    message = str(info.value)
    for words in ("Epoch 0", "ClassMeanLoss", "'ce'", "shape [3]", "one value per sample"):
        assert words in message, (words, message)


@pytest.mark.parametrize("labels,words", [
    (lambda y: y / 9, ["labels 'y'", "fractional", "truncated"]),
    (lambda y: np.array(["cat", "dog", "owl"])[y], ["labels 'y'", "<U3", "not class indices"]),
    (lambda y: y + 1, ["labels 'y'", "range over [1, 3]", "3 classes"]),
])
def test_labels_that_do_not_fit_the_loss_are_refused_before_training(labels, words):
    data = _data()
    data["y"] = labels(data["y"])
    with pytest.raises(ConfigError) as info:
        _fit(_classifier_network(), data={"train": data})
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_labels_made_by_an_op_are_checked_as_the_step_runs():
    data = _data()
    model = fe.build(_dense, model_name="m", loss_name="ce")
    network = fe.Network([AddConst(inputs="y", outputs="y", c=5.0),
                          ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    with pytest.raises(tf.errors.InvalidArgumentError, match="reach the number of classes"):
        _fit(network, data={"train": data})


class EightFeatures(keras.Model):
    """A subclassed model built for 8 features (no Input layer for fe_dist to read)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)
        self.dense.build((None, 8))

    def call(self, x):
        return tf.nn.softmax(self.dense(x))


def test_a_model_that_does_not_fit_the_data_gets_keras_own_message():
    model = fe.build(EightFeatures, model_name="net", loss_name="ce")
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    with pytest.raises(ConfigError) as info:
        _fit(network)
    message = str(info.value)
    assert "expected axis -1 of input shape to have value 8" in message, message
    assert "received input with shape (16, 6)" in message and "Epoch 0 (train)" in message


def test_classification_losses_say_what_to_change_when_shapes_do_not_fit():
    """FastEstimator's CrossEntropy takes (y_pred, y); fe_dist's losses take (labels,
    predictions). Swapped keys, or one-hot labels given to the sparse loss, fail before
    training with what to change (Keras' own error named flattened shapes); one-hot labels
    train with CategoricalCrossentropy."""
    from fe_dist.op.numpyop.univariate import Onehot
    from fe_dist.op.tensorop.loss import CategoricalCrossentropy
    rng = np.random.default_rng(0)
    d = {"train": {"x": rng.random((64, 8, 8, 1), dtype=np.float32),
                   "y": rng.integers(0, 10, 64)}}

    def fit(loss, pipe_ops=()):
        model = fe.build(lambda: keras.Sequential([keras.Input((8, 8, 1)),
                                                   keras.layers.Flatten(),
                                                   keras.layers.Dense(10, activation="softmax")]),
                         model_name="m", loss_name="ce")
        return fe.Estimator(pipeline=fe.Pipeline(data=d, batch_size=16, ops=list(pipe_ops)),
                            network=fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                                                loss]),
                            epochs=1, verbose=False).fit()

    with pytest.raises(ConfigError, match=r"inputs look swapped.*inputs=\('y', 'p'\)"):
        fit(SparseCategoricalCrossentropy(inputs=("p", "y"), outputs="ce"))
    onehot = Onehot(inputs="y", outputs="y", num_classes=10, label_smoothing=0.1)
    with pytest.raises(ConfigError, match=r"labels 'y' have shape \[16, 10\].*Use "
                                          "CategoricalCrossentropy"):
        fit(SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce"), [onehot])
    summary = fit(CategoricalCrossentropy(inputs=("y", "p"), outputs="ce"), [onehot])
    assert np.isfinite(summary.records[0].train_loss["ce"])
