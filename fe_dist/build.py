"""`build`: make a model with its optimizer and the loss key it trains on."""

from __future__ import annotations

from typing import Callable

import keras

from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError

OptimizerSpec = str | keras.optimizers.Optimizer | Callable[[], keras.optimizers.Optimizer]


def build(model_def: Callable[[], keras.Model], model_name: str,
          optimizer: OptimizerSpec = "adam", loss_name: str = "loss") -> keras.Model:
    """Build a Keras model for fe_dist.

    The model gets ``model_name``, ``loss_name`` and ``optimizer`` attributes. Its optimizer is
    built on the model's variables now, so every optimizer variable exists before training and
    can be broadcast from rank 0.

    Args:
        model_def: A function returning a ``keras.Model`` (called once, on every rank).
        model_name: Unique name; also the prefix of the model's collective names.
        optimizer: An optimizer name ("adam", "sgd", ...), a Keras optimizer, or a function
            returning one.
        loss_name: The key of the loss this model trains on (written by a loss op).
    """
    get_context()  # pins this rank before TensorFlow starts
    if not isinstance(model_name, str) or not model_name:
        raise ConfigError(f"fe.build: model_name must be a non-empty string, got {model_name!r}.")
    if not isinstance(loss_name, str) or not loss_name:
        raise ConfigError(f"fe.build({model_name!r}): loss_name must be a key name, got "
                          f"{loss_name!r}.")
    if not callable(model_def):
        raise ConfigError(f"fe.build({model_name!r}): model_def must be a function returning a "
                          "keras.Model, e.g. model_def=lambda: LeNet().")
    model = model_def()
    if not isinstance(model, keras.Model):
        raise ConfigError(f"fe.build({model_name!r}): model_def returned {type(model).__name__}, "
                          "not a keras.Model.")
    opt = _make_optimizer(optimizer, model_name)
    opt.build(model.trainable_variables)
    model.model_name = model_name
    model.loss_name = loss_name
    model.optimizer = opt
    return model


def _make_optimizer(optimizer: OptimizerSpec, model_name: str) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError as err:
            raise ConfigError(f"fe.build({model_name!r}): unknown optimizer {optimizer!r}. Use a "
                              "Keras name such as 'adam' or 'sgd', or a keras optimizer.") from err
    if callable(optimizer):
        opt = optimizer()
        if isinstance(opt, keras.optimizers.Optimizer):
            return opt
    raise ConfigError(f"fe.build({model_name!r}): optimizer must be a name, a keras optimizer or a "
                      f"function returning one; got {optimizer!r}.")
