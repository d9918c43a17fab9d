"""Keras is the oracle: user-shaped Keras models and optimizers, each trained by fe_dist and by
Keras' own ``model.fit`` on the same batches from the same initial weights.

Used in-process by ``tests/conformance/test_keras_conformance.py`` (one process, local backend)
and on 2 ranks by ``tests/programs/conformance.py`` (every case without batch statistics, in one
launch). Both sides see the same batches: fe_dist shuffles each epoch with
``sharding.epoch_permutation(n, seed, epoch)`` and drops the last partial global batch, so Keras
gets exactly those permuted rows, epoch after epoch, in one ``fit`` with ``shuffle=False``.

Dropout: fe_dist draws its masks from (seed, rank, epoch), so ranks draw different ones and N
ranks equal one process in distribution only (tests/test_random_streams.py). `dropout_same_seed`
gives Keras' model fe_dist's seed states at each epoch (as the initial weights are copied) and
then compares bit for bit, on one process only.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

import fe_dist as fe
from fe_dist import sharding
from fe_dist.determinism import reseed_models
from fe_dist.distributed import get_context
from fe_dist.layers import SyncBatchNormalization
from fe_dist.op.numpyop.univariate.onehot import Onehot
from fe_dist.op.tensorop.loss import (CategoricalCrossentropy, LossOp,
                                      SparseCategoricalCrossentropy)
from fe_dist.op.tensorop.model import ModelOp

SEED = 7  # the Estimator's shuffle seed; Keras gets the same permutations
INIT_SEED = 1234  # Keras' random seed when a case builds its initial weights
# Float32 rounding only: both sides compute the same sums in another order (fe_dist: per-sample
# sum / global batch, plus the model's own losses; Keras: its mean, plus the same). A few steps
# of that leave differences of a few float32 ulps of the weights (~1e-7 relative); a wrong
# rule (a regularizer left out, EMA not copied, a shard counted twice) moves weights by 1e-3 and
# more. Float16 forward passes round at 1e-3 relative (bfloat16's 8-bit mantissa at 8e-3, and
# 2 ranks add their partial gradients in another order), hence their own bounds.
RTOL, ATOL = 1e-5, 1e-6
RTOL_FP16, ATOL_FP16 = 2e-3, 2e-4
RTOL_BF16, ATOL_BF16 = 8e-3, 8e-4


@dataclasses.dataclass
class Case:
    """One conformance case.

    Attributes:
        name: Test id.
        exercises: What it checks, for the README and the report.
        model: Builds the Keras model (the same function for both sides, unless `fe_model`).
        optimizer: Builds a fresh optimizer (one for each side).
        keras_loss: The loss given to Keras' compile (a name or a keras.losses.Loss).
        fe_loss: The fe_dist loss op, inputs ("y", "pred"), output "loss".
        data: Builds the training arrays {key: array} from a numpy Generator.
        inputs: The model's input keys, in order.
        batch: Global batch size.
        epochs: Epochs (each drops its last partial batch).
        mixed_precision: fe.build's argument; the Keras side builds under the same policy.
        global_policy: A Keras dtype policy the user set globally (keras.config) while both
            sides build the model.
        batch_stats: The model normalises by batch statistics (BatchNormalization): N ranks
            differ from one process by design (README: "BatchNorm on N ranks"), so it runs on
            one process only.
        rank_draws: The model draws random numbers in training (Dropout): fe_dist draws them
            from (seed, rank, epoch), so N ranks draw other masks than one process by design;
            one process only, with Keras given fe_dist's seed states at each epoch.
        fe_model: Builds fe_dist's model when it differs from Keras' (SyncBatchNormalization
            in place of BatchNormalization); same weights in the same order.
        keras_optimizer: Keras' optimizer when it must differ from fe_dist's (see
            `DenseGradientAdam`).
        pipeline_ops: fe_dist Pipeline ops (label smoothing by `Onehot`).
        keras_y: Keras' targets from the data (e.g. smoothed one-hot labels come from the loss).
    """

    name: str
    exercises: str
    model: Callable[[], keras.Model]
    optimizer: Callable[[], keras.optimizers.Optimizer | str]
    keras_loss: Callable[[], Any]
    fe_loss: Callable[[], LossOp]
    data: Callable[[np.random.Generator, int], dict[str, np.ndarray]]
    inputs: tuple[str, ...] = ("x",)
    batch: int = 16
    epochs: int = 2
    mixed_precision: bool | str = False
    global_policy: str | None = None
    batch_stats: bool = False
    rank_draws: bool = False
    fe_model: Callable[[], keras.Model] | None = None
    keras_optimizer: Callable[[], keras.optimizers.Optimizer] | None = None
    pipeline_ops: Callable[[], list] = list
    keras_y: Callable[[dict[str, np.ndarray]], np.ndarray] = lambda d: d["y"]

    @property
    def samples(self) -> int:
        """A few more than the batches need: the last partial batch is dropped."""
        return 2 * self.batch + 3

    @property
    def tolerance(self) -> tuple[float, float]:
        if self.policy == "mixed_bfloat16":
            return RTOL_BF16, ATOL_BF16
        return (RTOL_FP16, ATOL_FP16) if self.policy else (RTOL, ATOL)

    @property
    def policy(self) -> str | None:
        """The dtype policy the Keras side builds under."""
        return self.global_policy or {True: "mixed_float16", "float16": "mixed_float16",
                                      "bfloat16": "mixed_bfloat16"}.get(self.mixed_precision)


@dataclasses.dataclass
class Result:
    """A trained side: its final weights (model.weights order, seed states left out), its
    optimizer's variables (step count, moments, EMA, accumulators, loss scale) and type."""

    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    optimizer_type: str
    per_rank_batch: list[int] | None = None  # fe_dist's split of the global batch

    def save(self, path: Any) -> None:
        np.savez(path, **{f"w{i}": w for i, w in enumerate(self.weights)},
                 **{f"o{i}": o for i, o in enumerate(self.optimizer)})

    @classmethod
    def load(cls, path: Any, optimizer_type: str, per_rank_batch: list[int]) -> "Result":
        with np.load(path) as saved:
            count = lambda p: sum(k.startswith(p) for k in saved.files)  # noqa: E731
            return cls([saved[f"w{i}"] for i in range(count("w"))],
                       [saved[f"o{i}"] for i in range(count("o"))], optimizer_type,
                       per_rank_batch)


# -- losses ------------------------------------------------------------------------------------
def sparse(from_logits: bool = True) -> Callable[[], LossOp]:
    return lambda: SparseCategoricalCrossentropy(inputs=("y", "pred"), outputs="loss",
                                                 from_logits=from_logits)


def keras_sparse(from_logits: bool = True) -> Callable[[], Any]:
    return lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


class PerSampleKerasLoss(LossOp):
    """A user's loss op: any Keras loss object, per sample. Keras' default reduction averages
    every element over the batch; with ``reduction=None`` each sample's elements are averaged
    here, and fe_dist averages the samples over the global batch: the same mean."""

    def __init__(self, inputs, outputs, loss: keras.losses.Loss, mode=None):
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        config = {**loss.get_config(), "reduction": None}
        self.loss = type(loss).from_config(config)

    def per_sample_loss(self, y_true, y_pred):
        values = self.loss(y_true, y_pred)
        if values.shape.rank > 1:
            values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
        return tf.cast(values, tf.float32)


class MeanSquaredError(LossOp):
    """A user's loss op written by hand: the mean squared error of each sample."""

    def per_sample_loss(self, y_true, y_pred):
        diff = tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32)
        return tf.reduce_mean(tf.square(diff), axis=-1)


# -- data --------------------------------------------------------------------------------------
def vectors(features: int = 6, classes: int = 3) -> Callable[[np.random.Generator], dict]:
    def make(rng: np.random.Generator, n: int) -> dict:
        x = rng.normal(size=(n, features)).astype(np.float32)
        return {"x": x, "y": rng.integers(0, classes, n).astype(np.int32)}
    return make


def images(size: int = 8, channels: int = 1, classes: int = 3) -> Callable:
    def make(rng: np.random.Generator, n: int) -> dict:
        x = rng.normal(size=(n, size, size, channels)).astype(np.float32)
        return {"x": x, "y": rng.integers(0, classes, n).astype(np.int32)}
    return make


def tokens(length: int = 7, vocab: int = 20, classes: int = 3, pad: bool = True) -> Callable:
    """Integer sequences; with ``pad`` each is zero-padded after a random length (1..length),
    the masked positions of Embedding(mask_zero=True)."""
    def make(rng: np.random.Generator, n: int) -> dict:
        x = rng.integers(1, vocab, (n, length)).astype(np.int32)
        if pad:
            lengths = rng.integers(1, length + 1, n)
            x[np.arange(length)[None, :] >= lengths[:, None]] = 0
        return {"x": x, "y": rng.integers(0, classes, n).astype(np.int32)}
    return make


def float_sequences(length: int = 6, features: int = 3, classes: int = 3) -> Callable:
    """Float sequences padded with all-zero steps (what keras.layers.Masking masks)."""
    def make(rng: np.random.Generator, n: int) -> dict:
        x = rng.normal(size=(n, length, features)).astype(np.float32)
        lengths = rng.integers(2, length + 1, n)
        x[np.arange(length)[None, :] >= lengths[:, None]] = 0.0
        return {"x": x, "y": rng.integers(0, classes, n).astype(np.int32)}
    return make


def two_inputs(rng: np.random.Generator, n: int) -> dict:
    return {"a": rng.normal(size=(n, 5)).astype(np.float32),
            "b": rng.normal(size=(n, 4, 4, 1)).astype(np.float32),
            "y": rng.integers(0, 3, n).astype(np.int32)}


def pairs(rng: np.random.Generator, n: int) -> dict:
    left = rng.normal(size=(n, 6)).astype(np.float32)
    same = rng.integers(0, 2, n)
    right = np.where(same[:, None] == 1, left + 0.1 * rng.normal(size=(n, 6)),
                     rng.normal(size=(n, 6))).astype(np.float32)
    return {"left": left, "right": right, "y": same[:, None].astype(np.float32)}


def regression(rng: np.random.Generator, n: int) -> dict:
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 2)) + 0.1 * rng.normal(size=(n, 2))).astype(np.float32)
    return {"x": x, "y": y}


def multilabel(rng: np.random.Generator, n: int) -> dict:
    return {"x": rng.normal(size=(n, 6)).astype(np.float32),
            "y": rng.integers(0, 2, (n, 4)).astype(np.float32)}


# -- models ------------------------------------------------------------------------------------
L = keras.layers


def mlp(hidden: int = 16, classes: int = 3, features: int = 6, **dense: Any) -> Callable:
    def make() -> keras.Model:
        return keras.Sequential([keras.Input((features,)), L.Dense(hidden, "relu", **dense),
                                 L.Dense(classes)])
    return make


def activity_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)),
                             L.Dense(16, "relu", activity_regularizer=keras.regularizers.L2(0.05)),
                             L.ActivityRegularization(l1=0.02),
                             L.Dense(3)])


class LatentPenalty(L.Layer):
    """A VAE-style layer: a dense code plus a KL-like penalty on it (its mean over the batch)
    through ``add_loss``."""

    def __init__(self, units: int, weight: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = L.Dense(units)
        self.weight = weight

    def call(self, x: Any) -> Any:
        z = self.dense(x)
        self.add_loss(self.weight * keras.ops.mean(keras.ops.sum(keras.ops.square(z), axis=-1)))
        return z


def add_loss_layer_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), LatentPenalty(8, 0.5), L.Activation("relu"),
                             L.Dense(3)])


class PenalisedModel(keras.Model):
    """A subclassed model that adds a loss on its hidden activations itself and holds a
    regularised layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = L.Dense(12, "tanh", kernel_regularizer=keras.regularizers.L1(0.01))
        self.out = L.Dense(3)

    def call(self, x: Any) -> Any:
        h = self.hidden(x)
        self.add_loss(0.3 * keras.ops.mean(keras.ops.abs(h)))
        return self.out(h)


def subclassed_model() -> keras.Model:
    model = PenalisedModel()
    model(np.zeros((1, 6), np.float32))  # build
    return model


def conv_l2_model() -> keras.Model:
    reg = keras.regularizers.L2(0.02)
    return keras.Sequential([keras.Input((8, 8, 1)),
                             L.Conv2D(4, 3, activation="relu", kernel_regularizer=reg,
                                      bias_regularizer=reg),
                             L.MaxPooling2D(), L.Flatten(), L.Dense(3, kernel_regularizer=reg)])


def two_input_model() -> keras.Model:
    a = keras.Input((5,), name="a")
    b = keras.Input((4, 4, 1), name="b")
    hb = L.Flatten()(L.Conv2D(2, 2, activation="relu")(b))
    h = L.Concatenate()([L.Dense(6, "relu")(a), hb])
    return keras.Model([a, b], L.Dense(3)(h))


def siamese_model() -> keras.Model:
    left, right = keras.Input((6,), name="left"), keras.Input((6,), name="right")
    encoder = L.Dense(8, "tanh", name="shared_encoder")  # one layer, two calls
    diff = L.Lambda(lambda t: keras.ops.abs(t[0] - t[1]))([encoder(left), encoder(right)])
    return keras.Model([left, right], L.Dense(1)(diff))


class BranchingModel(keras.Model):
    """A subclassed model whose forward pass differs in training: a scaled, shifted hidden
    layer (as a user writes a custom regularising trick)."""

    def __init__(self) -> None:
        super().__init__()
        self.d1 = L.Dense(10, "relu")
        self.d2 = L.Dense(3)

    def call(self, x: Any, training: bool = False) -> Any:
        h = self.d1(x)
        if training:
            h = 0.5 * h + 0.25
        return self.d2(h)


def branching_model() -> keras.Model:
    model = BranchingModel()
    model(np.zeros((1, 6), np.float32))
    return model


class TrainingShift(L.Layer):
    """A custom layer with a trainable weight used only in training (identity in inference):
    its gradient exists only if the model really runs with training=True."""

    def build(self, input_shape: Any) -> None:
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

    def call(self, x: Any, training: bool = False) -> Any:
        return x * 1.5 + self.shift if training else x


def layer_branch_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(8, "relu"), TrainingShift(),
                             L.Dense(3)])


def frozen_backbone_model() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, use_bias=False)(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    backbone = keras.Model(inp, L.GlobalAveragePooling2D()(h), name="backbone")
    backbone.trainable = False
    x = keras.Input((8, 8, 1))
    # Keras' transfer-learning pattern. (In a functional model Keras 3 replaces this
    # training=False by the outer call's training flag; the frozen BatchNorm runs in inference
    # mode anyway, as trainable=False BatchNorm always does. A Dropout here would be active.)
    features = backbone(x, training=False)
    return keras.Model(x, L.Dense(3)(L.Dense(8, "relu")(features)))


def batchnorm_dense_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(12, use_bias=False),
                             L.BatchNormalization(), L.ReLU(), L.Dense(3)])


def batchnorm_conv_model(norm: type = L.BatchNormalization) -> Callable:
    def make() -> keras.Model:
        return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, use_bias=False),
                                 norm(momentum=0.9), L.ReLU(), L.GlobalAveragePooling2D(),
                                 L.Dense(3)])
    return make


def layernorm_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(12), L.LayerNormalization(),
                             L.Activation("gelu"), L.Dense(3)])


def lstm_model() -> keras.Model:
    return keras.Sequential([keras.Input((7,), dtype="int32"),
                             L.Embedding(20, 8, mask_zero=True), L.LSTM(8), L.Dense(3)])


def gru_model() -> keras.Model:
    return keras.Sequential([keras.Input((7,), dtype="int32"),
                             L.Embedding(20, 6, mask_zero=True), L.Bidirectional(L.GRU(5)),
                             L.Dense(3)])


def masking_model() -> keras.Model:
    return keras.Sequential([keras.Input((6, 3)), L.Masking(0.0),
                             L.LSTM(6, return_sequences=True), L.GRU(5), L.Dense(3)])


def conv1d_model() -> keras.Model:
    return keras.Sequential([keras.Input((7,), dtype="int32"), L.Embedding(20, 6),
                             L.Conv1D(8, 3, activation="relu"), L.GlobalMaxPooling1D(),
                             L.Dense(3)])


def cnn_model() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"),
                             L.MaxPooling2D(), L.Conv2D(6, 2, padding="same", activation="relu"),
                             L.Flatten(), L.Dense(3)])


def depthwise_model() -> keras.Model:
    return keras.Sequential([keras.Input((8, 8, 2)), L.DepthwiseConv2D(3, depth_multiplier=2),
                             L.ReLU(), L.SeparableConv2D(6, 3), L.GlobalAveragePooling2D(),
                             L.Dense(3)])


def attention_model() -> keras.Model:
    x = keras.Input((7,), dtype="int32")
    h = L.Embedding(20, 8)(x)
    # No projection biases: the key bias has no effect on softmax attention, so its gradient is
    # rounding noise, which Adam scales into steps that differ with the summation order.
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)(h, h)
    h = L.LayerNormalization()(h + attended)
    h = L.LayerNormalization()(h + L.Dense(8)(L.Dense(16, "relu")(h)))
    return keras.Model(x, L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(h)))


def mobilenet_model() -> keras.Model:
    return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                          classes=3)


def mixed_model() -> keras.Model:
    # Keras' mixed-precision guide: the last activation in float32.
    return keras.Sequential([keras.Input((6,)), L.Dense(16, "relu"), L.Dense(3),
                             L.Activation("softmax", dtype="float32")])


def dropout_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(16, "relu"), L.Dropout(0.3),
                             L.Dense(3)])


def regression_model() -> keras.Model:
    return keras.Sequential([keras.Input((6,)), L.Dense(8, "relu"), L.Dense(2)])


# -- optimizers --------------------------------------------------------------------------------
O = keras.optimizers


def dense_gradients(optimizer: type) -> type:
    """``optimizer`` given dense gradients, for Keras' side of Embedding cases with optimizers
    that square the gradient (Adam, RMSprop).

    Keras' TensorFlow backend hands an Embedding's gradient to the optimizer as IndexedSlices,
    one row per lookup, duplicates not yet summed; Adam's ``square(gradient)`` then squares
    each lookup's row, so a token seen twice adds g1**2 + g2**2 to the second moment, not
    (g1 + g2)**2. fe_dist sums gradients (over ranks) as dense tensors, so its optimizer sees
    the summed gradient: what Keras' optimizer computes from a dense gradient (as on Keras'
    JAX backend). The oracle here is Keras' own optimizer on that dense gradient; SGD, linear
    in the gradient, is compared with plain Keras (embedding_gru_mask, conv1d)."""
    def apply_gradients(self: Any, grads_and_vars: Any) -> Any:
        return optimizer.apply_gradients(self, [
            (tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g, v)
            for g, v in grads_and_vars])
    return type(optimizer.__name__, (optimizer,), {"apply_gradients": apply_gradients})


# -- the cases ---------------------------------------------------------------------------------
SCHEDULES = keras.optimizers.schedules


def _case(name: str, exercises: str, model: Callable, optimizer: Callable, data: Callable,
          loss: tuple[Callable, Callable] = (keras_sparse(), sparse()), **kw: Any) -> Case:
    return Case(name=name, exercises=exercises, model=model, optimizer=optimizer,
                keras_loss=loss[0], fe_loss=loss[1], data=data, **kw)


CASES: list[Case] = [
    # model.losses: regularizers and add_loss
    _case("kernel_l2", "Dense kernel_regularizer=L2, SGD", mlp(
        kernel_regularizer=keras.regularizers.L2(0.05)), lambda: O.SGD(0.1), vectors()),
    _case("bias_l1l2", "bias_regularizer=L1L2, Adam", mlp(
        bias_regularizer=keras.regularizers.L1L2(0.02, 0.02), bias_initializer="ones"),
        lambda: O.Adam(0.01), vectors(), batch=15),
    _case("activity_regularizer", "activity_regularizer=L2 and an ActivityRegularization layer",
          activity_model, lambda: O.SGD(0.1), vectors()),
    _case("add_loss_layer", "a custom layer's self.add_loss (VAE-style KL on a code)",
          add_loss_layer_model, lambda: O.Adam(0.01), vectors(), batch=15),
    _case("add_loss_subclassed", "a subclassed Model's own add_loss in call + L1 kernel "
          "regularizer of a sublayer", subclassed_model, lambda: O.SGD(0.1), vectors()),
    _case("conv2d_l2", "Conv2D kernel+bias L2 (ResNet-style weight decay), SGD momentum",
          conv_l2_model, lambda: O.SGD(0.05, momentum=0.9), images()),
    # architectures
    _case("functional_two_inputs", "functional model with two inputs (vector + image)",
          two_input_model, lambda: O.Adam(0.01), two_inputs, inputs=("a", "b"), batch=15),
    _case("shared_layer", "one Dense layer called on two inputs (siamese), "
          "BinaryCrossentropy(from_logits=True)", siamese_model, lambda: O.Adam(0.01), pairs,
          inputs=("left", "right"),
          loss=(lambda: keras.losses.BinaryCrossentropy(from_logits=True),
                lambda: PerSampleKerasLoss(("y", "pred"), "loss",
                                           keras.losses.BinaryCrossentropy(from_logits=True)))),
    _case("subclassed_training_branch", "subclassed Model whose call branches on training",
          branching_model, lambda: O.SGD(0.1), vectors()),
    _case("layer_training_branch", "custom layer with a weight used only when training=True",
          layer_branch_model, lambda: O.SGD(0.1), vectors()),
    _case("frozen_backbone", "trainable=False backbone called with training=False (its "
          "BatchNorm in inference mode), trained head", frozen_backbone_model,
          lambda: O.Adam(0.01), images()),
    _case("batchnorm_dense", "Dense + BatchNormalization, SGD momentum (1 process)",
          batchnorm_dense_model, lambda: O.SGD(0.1, momentum=0.9), vectors(),
          batch_stats=True),
    _case("batchnorm_conv", "Conv2D + BatchNormalization, Adam (1 process)",
          batchnorm_conv_model(), lambda: O.Adam(0.01), images(), batch_stats=True),
    _case("sync_batchnorm", "fe_dist SyncBatchNormalization vs Keras BatchNormalization "
          "(1 process and 2 ranks)", batchnorm_conv_model(), lambda: O.Adam(0.01), images(),
          fe_model=batchnorm_conv_model(SyncBatchNormalization), batch=15),
    _case("layernorm", "LayerNormalization, gelu, RMSprop", layernorm_model,
          lambda: O.RMSprop(0.01), vectors()),
    _case("embedding_lstm_mask", "Embedding(mask_zero=True) + LSTM on padded sequences, Adam "
          "(Keras given the dense gradient: dense_gradients)", lstm_model, lambda: O.Adam(0.01),
          tokens(), keras_optimizer=lambda: dense_gradients(O.Adam)(0.01)),
    _case("embedding_gru_mask", "Embedding(mask_zero=True) + Bidirectional(GRU), SGD momentum",
          gru_model, lambda: O.SGD(0.1, momentum=0.9), tokens(), batch=15),
    _case("masking_stacked_rnn", "Masking + LSTM(return_sequences) + GRU on padded floats",
          masking_model, lambda: O.RMSprop(0.01), float_sequences()),
    _case("conv1d", "Embedding + Conv1D + GlobalMaxPooling1D (text CNN), SGD nesterov",
          conv1d_model, lambda: O.SGD(0.1, momentum=0.9, nesterov=True), tokens(pad=False)),
    _case("conv2d", "Conv2D + MaxPooling2D CNN", cnn_model, lambda: O.Adam(0.01), images()),
    _case("depthwise_separable", "DepthwiseConv2D + SeparableConv2D", depthwise_model,
          lambda: O.Adam(0.01), images(channels=2)),
    _case("multi_head_attention", "MultiHeadAttention transformer block, softmax output "
          "(from_logits=False), Adam (Keras given the dense gradient)", attention_model,
          lambda: O.Adam(0.01), tokens(pad=False), loss=(keras_sparse(False), sparse(False)),
          batch=15, keras_optimizer=lambda: dense_gradients(O.Adam)(0.01)),
    _case("mobilenetv2", "keras.applications.MobileNetV2(weights=None, alpha=0.35), 32x32 "
          "(1 process: BatchNorm)", mobilenet_model, lambda: O.Adam(0.01),
          images(32, 3), loss=(keras_sparse(False), sparse(False)), batch=4, epochs=1,
          batch_stats=True),
    _case("mixed_float16", "fe.build(mixed_precision=True) vs Keras mixed_float16 "
          "(LossScaleOptimizer)", mixed_model, lambda: O.Adam(0.01), vectors(),
          loss=(keras_sparse(False), sparse(False)), mixed_precision=True),
    _case("mixed_float16_global_policy", "keras.config.set_dtype_policy('mixed_float16') "
          "around fe.build (no mixed_precision=): Keras' compile adds loss scaling",
          mixed_model, lambda: O.Adam(0.01), vectors(),
          loss=(keras_sparse(False), sparse(False)), global_policy="mixed_float16"),
    _case("mixed_bfloat16", "fe.build(mixed_precision='bfloat16') vs Keras mixed_bfloat16",
          mixed_model, lambda: O.SGD(0.1), vectors(), loss=(keras_sparse(False), sparse(False)),
          mixed_precision="bfloat16"),
    _case("dropout_same_seed", "Dropout(0.3) in training, Keras given fe_dist's seed states "
          "(1 process: ranks draw their own masks)", dropout_model, lambda: O.SGD(0.1),
          vectors(), rank_draws=True),
    # optimizers
    _case("sgd_momentum", "SGD(momentum=0.9)", mlp(), lambda: O.SGD(0.05, momentum=0.9),
          vectors()),
    _case("sgd_nesterov", "SGD(momentum=0.9, nesterov=True)", mlp(),
          lambda: O.SGD(0.05, momentum=0.9, nesterov=True), vectors(), batch=15),
    _case("adam_by_name", "optimizer='adam' (a name, Keras' defaults)", mlp(), lambda: "adam",
          vectors()),
    _case("adamw", "AdamW(weight_decay=0.05)", mlp(), lambda: O.AdamW(0.01, weight_decay=0.05),
          vectors()),
    _case("rmsprop_centered", "RMSprop(momentum=0.5, centered=True)", mlp(),
          lambda: O.RMSprop(0.01, momentum=0.5, centered=True), vectors()),
    _case("clipnorm", "SGD(clipnorm=0.05): per-variable clipping of the summed gradient",
          mlp(), lambda: O.SGD(0.5, clipnorm=0.05), vectors(), batch=15),
    _case("clipvalue", "SGD(clipvalue=0.01)", mlp(), lambda: O.SGD(0.5, clipvalue=0.01),
          vectors()),
    _case("global_clipnorm", "SGD(global_clipnorm=0.05)", mlp(),
          lambda: O.SGD(0.5, global_clipnorm=0.05), vectors()),
    _case("lr_schedule_piecewise", "SGD(learning_rate=PiecewiseConstantDecay) by step",
          mlp(), lambda: O.SGD(SCHEDULES.PiecewiseConstantDecay([1, 2], [0.5, 0.1, 0.02])),
          vectors()),
    _case("lr_schedule_cosine_warmup", "Adam(learning_rate=CosineDecay with warm-up)", mlp(),
          lambda: O.Adam(SCHEDULES.CosineDecay(1e-3, decay_steps=3, warmup_target=2e-2,
                                               warmup_steps=2)), vectors()),
    _case("ema", "Adam(use_ema=True): the EMA weights are the model's after fit", mlp(),
          lambda: O.Adam(0.02, use_ema=True, ema_momentum=0.5), vectors()),
    _case("ema_overwrite", "SGD(use_ema=True, ema_overwrite_frequency=3)", mlp(),
          lambda: O.SGD(0.1, use_ema=True, ema_momentum=0.8, ema_overwrite_frequency=3),
          vectors()),
    _case("gradient_accumulation", "SGD(momentum, gradient_accumulation_steps=2)", mlp(),
          lambda: O.SGD(0.1, momentum=0.9, gradient_accumulation_steps=2), vectors(),
          batch=15),
    # losses
    _case("label_smoothing", "Onehot(label_smoothing=0.1) + CategoricalCrossentropy("
          "from_logits=True) vs Keras CategoricalCrossentropy(label_smoothing=0.1)", mlp(),
          lambda: O.Adam(0.01), vectors(),
          loss=(lambda: keras.losses.CategoricalCrossentropy(from_logits=True,
                                                             label_smoothing=0.1),
                lambda: CategoricalCrossentropy(inputs=("y1", "pred"), outputs="loss",
                                                from_logits=True)),
          pipeline_ops=lambda: [Onehot("y", "y1", num_classes=3, label_smoothing=0.1)],
          keras_y=lambda d: np.eye(3, dtype=np.float32)[d["y"]]),
    _case("binary_label_smoothing", "a user LossOp wrapping BinaryCrossentropy("
          "from_logits=True, label_smoothing=0.2), multi-label", mlp(classes=4),
          lambda: O.Adam(0.01), multilabel,
          loss=(lambda: keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
                lambda: PerSampleKerasLoss(("y", "pred"), "loss", keras.losses.BinaryCrossentropy(
                    from_logits=True, label_smoothing=0.2)))),
    _case("mse_user_lossop", "a hand-written per-sample MSE LossOp vs loss='mse'",
          regression_model, lambda: O.SGD(0.05), regression,
          loss=(lambda: "mse", lambda: MeanSquaredError(("y", "pred"), "loss"))),
]

BY_NAME = {c.name: c for c in CASES}
MULTIRANK = [c.name for c in CASES if not (c.batch_stats or c.rank_draws)]


# -- the two sides -----------------------------------------------------------------------------
def case_data(case: Case) -> dict[str, np.ndarray]:
    """The case's training arrays (the same on every rank and every run)."""
    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    return case.data(rng, case.samples)


def _with_policy(policy: str | None, make: Callable[[], Any]) -> Any:
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        return make()
    finally:
        keras.config.set_dtype_policy(previous)


def initial_weights(case: Case) -> list[np.ndarray]:
    """Keras' own initialisation of the case's model, from a fixed seed."""
    get_context()  # fe_dist pins the process before TensorFlow makes its first tensor
    keras.utils.set_random_seed(INIT_SEED)
    return _with_policy(case.policy, case.model).get_weights()


def _final(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> Result:
    weights = [np.array(v.numpy()) for v in model.weights
               if not v.path.endswith("seed_generator_state")]
    return Result(weights, [np.array(v.numpy()) for v in optimizer.variables],
                  type(optimizer).__name__)


class _FeDistSeeds(keras.callbacks.Callback):
    """Gives Keras' model the random-seed states fe_dist gives a one-process run at the start
    of each epoch (`fe_dist.determinism.reseed_models`, rank 0), so both draw the same Dropout
    masks: the random state is copied, as the initial weights are."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        if batch % self.steps == 0:
            reseed_models([self.model], rank=0, epoch=batch // self.steps)


def keras_fit(case: Case, init: list[np.ndarray]) -> Result:
    """Keras' own model.fit on fe_dist's batches: epoch e's permutation, full batches only,
    epochs one after the other in one fit call without reshuffling."""
    model = _with_policy(case.policy, case.model)
    model.set_weights(init)
    model.compile(optimizer=(case.keras_optimizer or case.optimizer)(), loss=case.keras_loss(),
                  jit_compile=False)
    data = case_data(case)
    n, steps = case.samples, sharding.steps_per_epoch(case.samples, case.batch)
    order = np.concatenate([sharding.epoch_permutation(n, SEED, e)[:steps * case.batch]
                            for e in range(case.epochs)])
    x = [data[k][order] for k in case.inputs]
    y = case.keras_y(data)[order]
    model.fit(x[0] if len(x) == 1 else x, y, batch_size=case.batch, epochs=1, shuffle=False,
              verbose=0, callbacks=[_FeDistSeeds(steps)] if case.rank_draws else [])
    return _final(model, model.optimizer)


def fe_fit(case: Case, init: list[np.ndarray]) -> Result:
    """fe_dist's fit of the same model: fe.build, ModelOp, the loss op, Estimator.fit, on
    whatever context this process has (one process, or a rank of a launch)."""
    model = _with_policy(case.global_policy, lambda: fe.build(
        case.fe_model or case.model, "model", optimizer=case.optimizer(), loss_name="loss",
        mixed_precision=case.mixed_precision))
    model.set_weights(init)
    inputs = list(case.inputs) if len(case.inputs) > 1 else case.inputs[0]
    network = fe.Network([ModelOp(inputs=inputs, model=model, outputs="pred"), case.fe_loss()])
    pipeline = fe.Pipeline(data={"train": case_data(case)}, batch_size=case.batch,
                           ops=case.pipeline_ops())
    summary = fe.Estimator(pipeline=pipeline, network=network, epochs=case.epochs, seed=SEED,
                           verbose=False).fit()
    result = _final(model, model.fe_dist.optimizers[0])
    result.per_rank_batch = list(summary.records[0].per_rank_batch)
    return result


def differences(case: Case, ours: Result, oracle: Result,
                init: list[np.ndarray]) -> dict[str, Any]:
    """How far fe_dist's end state is from Keras': the largest absolute difference of weights
    and of optimizer variables, the largest in units of the tolerance (> 1 fails), and how far
    Keras' training moved the weights (so that a pass means something)."""
    rtol, atol = case.tolerance
    out: dict[str, Any] = {"max_abs_diff": 0.0, "tolerance_units": 0.0, "keras_moved": 0.0,
                           "structure": None}
    if (len(ours.weights), len(ours.optimizer), ours.optimizer_type) != (
            len(oracle.weights), len(oracle.optimizer), oracle.optimizer_type):
        out["structure"] = (f"fe_dist: {len(ours.weights)} weights, {ours.optimizer_type} with "
                            f"{len(ours.optimizer)} variables; Keras: {len(oracle.weights)} "
                            f"weights, {oracle.optimizer_type} with {len(oracle.optimizer)}")
        out["tolerance_units"] = float("inf")
        return out
    for a, b in zip([*ours.weights, *ours.optimizer], [*oracle.weights, *oracle.optimizer]):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            out["structure"] = f"shapes {a.shape} vs {b.shape}"
            out["tolerance_units"] = float("inf")
            return out
        out["max_abs_diff"] = max(out["max_abs_diff"], float(np.max(np.abs(a - b), initial=0)))
        out["tolerance_units"] = max(out["tolerance_units"], float(np.max(
            np.abs(a - b) / (atol + rtol * np.abs(b)), initial=0)))
    for b, w0 in zip(oracle.weights, init):
        out["keras_moved"] = max(out["keras_moved"], float(np.max(np.abs(
            np.asarray(b, np.float64) - w0), initial=0)))
    return out
