"""`build`: make a model with its optimizer(s), learning-rate schedule and loss key."""

from __future__ import annotations

import numbers
from typing import Any, Callable

import keras

from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.schedule import BaseScheduler, LRSchedule

OptimizerSpec = str | keras.optimizers.Optimizer | Callable[[], keras.optimizers.Optimizer]
_PRECISIONS = {True: "mixed_float16", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def build(model_def: Callable[[], keras.Model], model_name: str,
          optimizer: OptimizerSpec | BaseScheduler = "adam", loss_name: str = "loss",
          lr: LRSchedule | float | BaseScheduler | Callable[[int, int], float] | None = None,
          mixed_precision: bool | str = False) -> keras.Model:
    """Build a Keras model for fe_dist.

    The model gets ``model_name``, ``loss_name``, ``optimizer`` and (when given) ``lr_schedule``
    attributes. Its optimizers are built on the model's variables now, so every optimizer variable
    exists before training and can be broadcast from rank 0.

    Args:
        model_def: A function returning a ``keras.Model`` (called once, on every rank).
        model_name: Unique name; also the prefix of the model's collective names.
        optimizer: An optimizer name ("adam", "sgd", ...), a Keras optimizer, a function returning
            one, or a Scheduler of those (the optimizer in force changes by epoch; each keeps its
            own state).
        loss_name: The key of the loss this model trains on (written by a loss op).
        lr: The learning rate: an `LRSchedule` (batch scaling, warm-up, per-epoch or per-step
            values), or what `LRSchedule`'s ``base`` takes. None keeps the optimizer's own.
        mixed_precision: True or "float16" builds the model under Keras' ``mixed_float16``
            policy with a loss-scale optimizer; "bfloat16" under ``mixed_bfloat16`` (no loss
            scaling needed). Variables stay float32.
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
    if mixed_precision not in (False, None, *_PRECISIONS):
        raise ConfigError(f"fe.build({model_name!r}): mixed_precision must be False, True, "
                          f"'float16' or 'bfloat16', got {mixed_precision!r}.")
    policy = _PRECISIONS.get(mixed_precision) if mixed_precision else None
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        model = model_def()
    finally:
        keras.config.set_dtype_policy(previous)
    if not isinstance(model, keras.Model):
        raise ConfigError(f"fe.build({model_name!r}): model_def returned {type(model).__name__}, "
                          "not a keras.Model.")
    if isinstance(optimizer, BaseScheduler):
        built = {id(v): _make_optimizer(v, model_name, policy) for v in optimizer.get_all_values()}
        schedule = _OptimizerScheduler(optimizer, built)
        optimizers = list(built.values())
    else:
        optimizers = [_make_optimizer(optimizer, model_name, policy)]
        schedule = None
    for opt in optimizers:
        opt.build(model.trainable_variables)
    model.model_name = model_name
    model.loss_name = loss_name
    model.optimizer = optimizers[0]
    model.fe_optimizers = optimizers
    model.fe_optimizer_schedule = schedule
    model.lr_schedule = None if lr is None else lr if isinstance(lr, LRSchedule) else \
        LRSchedule(lr)
    return model


def optimizer_at(model: keras.Model, epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer that updates ``model`` at ``epoch``."""
    schedule = getattr(model, "fe_optimizer_schedule", None)
    if schedule is None:
        return model.optimizer
    opt = schedule.get_current_value(epoch)
    if opt is None:
        raise ConfigError(f"Epoch {epoch}: model {model.model_name!r} trains but its optimizer "
                          "Scheduler has no optimizer then. Give it one from epoch 0.")
    return opt


def state_variables(model: keras.Model) -> list[Any]:
    """Everything that defines a model's training state: its variables and its optimizers'."""
    optimizers = getattr(model, "fe_optimizers", None) or [model.optimizer]
    return [*model.variables, *(v for opt in optimizers for v in opt.variables)]


class _OptimizerScheduler(BaseScheduler):
    """A user's Scheduler of optimizer specs, resolved to the optimizers built from them."""

    def __init__(self, specs: BaseScheduler, built: dict[int, keras.optimizers.Optimizer]):
        self.specs, self.built = specs, built

    def get_current_value(self, epoch: int) -> keras.optimizers.Optimizer | None:
        spec = self.specs.get_current_value(epoch)
        return None if spec is None else self.built[id(spec)]

    def get_all_values(self) -> list[keras.optimizers.Optimizer]:
        return list(self.built.values())


def _make_optimizer(optimizer: OptimizerSpec, model_name: str,
                    policy: str | None) -> keras.optimizers.Optimizer:
    opt = _plain_optimizer(optimizer, model_name)
    if policy == "mixed_float16" and not isinstance(opt, keras.optimizers.LossScaleOptimizer):
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _plain_optimizer(optimizer: OptimizerSpec, model_name: str) -> keras.optimizers.Optimizer:
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(optimizer)
        except ValueError as err:
            raise ConfigError(f"fe.build({model_name!r}): unknown optimizer {optimizer!r}. Use a "
                              "Keras name such as 'adam' or 'sgd', or a keras optimizer.") from err
    if callable(optimizer) and not isinstance(optimizer, numbers.Number):
        opt = optimizer()
        if isinstance(opt, keras.optimizers.Optimizer):
            return opt
    raise ConfigError(f"fe.build({model_name!r}): optimizer must be a name, a keras optimizer or a "
                      f"function returning one; got {optimizer!r}.")
