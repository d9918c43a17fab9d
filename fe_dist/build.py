"""`build`: make a model with its optimizer(s), learning-rate schedule and loss key."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable

import keras

from fe_dist import keras_fit
from fe_dist.distributed import get_context
from fe_dist.errors import ConfigError
from fe_dist.schedule import BaseScheduler, LRSchedule, RepeatScheduler, Scheduler

OptimizerSpec = str | keras.optimizers.Optimizer | Callable[[], keras.optimizers.Optimizer]
_PRECISIONS = {True: "mixed_float16", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def build(model_def: Callable[[], keras.Model], model_name: str,
          optimizer: OptimizerSpec | BaseScheduler = "adam", loss_name: str = "loss",
          lr: LRSchedule | float | BaseScheduler | Callable[[int, int], float] | None = None,
          mixed_precision: bool | str = False) -> keras.Model:
    """Build a Keras model for fe_dist.

    The model gets a ``model_name`` attribute (as in FastEstimator) and fe_dist's record of it,
    ``model.fe_dist`` (a `ModelInfo`: loss key, optimizers, schedules). Its optimizers are built
    on the model's variables now, so every optimizer variable exists before training and can be
    broadcast from rank 0.

    Args:
        model_def: A function returning a ``keras.Model`` (called once, on every rank).
        model_name: Unique name; also the prefix of the model's collective names.
        optimizer: An optimizer name ("adam", "sgd", ...), a Keras optimizer, a function returning
            one, or a Scheduler of those (the optimizer in force changes by epoch; each entry of
            the Scheduler gets a fresh optimizer with its own state, unless the entries are the
            same optimizer object).
        loss_name: The key of the loss this model trains on (written by a loss op).
        lr: The learning rate: an `LRSchedule` (batch scaling, warm-up, per-epoch or per-step
            values), or what `LRSchedule`'s ``base`` takes. None keeps the optimizer's own.
        mixed_precision: True or "float16" builds the model under Keras' ``mixed_float16``
            policy with a loss-scale optimizer (a model built under a global ``mixed_float16``
            policy gets one too, as Keras' compile gives it); "bfloat16" under ``mixed_bfloat16`` (no loss
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
    keras_fit.check_model(model, model_name)
    if policy is None and keras_fit.needs_loss_scaling(model):
        policy = "mixed_float16"  # set globally by the user: loss scaling, as Keras' compile adds
    if isinstance(optimizer, BaseScheduler):
        schedule = _OptimizerScheduler(optimizer, lambda spec: _make_optimizer(spec, model_name,
                                                                               policy))
        optimizers = schedule.get_all_values()
    else:
        optimizers = [_make_optimizer(optimizer, model_name, policy)]
        schedule = None
    for opt in optimizers:
        opt.build(model.trainable_variables)
    model.model_name = model_name  # FastEstimator's attribute, read by users' code
    model.fe_dist = ModelInfo(name=model_name, loss_name=loss_name, optimizers=optimizers,
                              optimizer_schedule=schedule,
                              lr_schedule=None if lr is None else lr if isinstance(
                                  lr, LRSchedule) else LRSchedule(lr))
    return model


@dataclasses.dataclass
class ModelInfo:
    """What fe_dist knows of a model made by `build`, kept as ``model.fe_dist`` (Keras' own
    attributes such as ``model.optimizer`` are left alone).

    Attributes:
        name: The model's unique name (``model_name``).
        loss_name: The key of the loss it trains on.
        optimizers: Every optimizer that may update it, built on its variables.
        optimizer_schedule: Which of them is in force by epoch; None when there is one.
        lr_schedule: Its learning-rate schedule, or None for the optimizer's own rate.
    """

    name: str
    loss_name: str
    optimizers: list[keras.optimizers.Optimizer]
    optimizer_schedule: BaseScheduler | None
    lr_schedule: LRSchedule | None

    def optimizer_at(self, epoch: int) -> keras.optimizers.Optimizer:
        """The optimizer that updates the model at ``epoch``."""
        if self.optimizer_schedule is None:
            return self.optimizers[0]
        opt = self.optimizer_schedule.get_current_value(epoch)
        if opt is None:
            raise ConfigError(f"Epoch {epoch}: model {self.name!r} trains but its optimizer "
                              "Scheduler has no optimizer then. Give it one from epoch 0.")
        return opt


def info(model: keras.Model) -> ModelInfo:
    """fe_dist's record of ``model``; a ConfigError when ``build`` did not make it."""
    record = getattr(model, "fe_dist", None)
    if not isinstance(record, ModelInfo):
        raise ConfigError(
            f"{type(model).__name__} {getattr(model, 'name', '')!r} was not made by fe_dist.build. "
            "Wrap it: fe.build(model_def=..., model_name=..., optimizer=..., loss_name=...).")
    return record


def optimizer_at(model: keras.Model, epoch: int) -> keras.optimizers.Optimizer:
    """The optimizer that updates ``model`` at ``epoch``."""
    return info(model).optimizer_at(epoch)


def state_variables(model: keras.Model) -> list[Any]:
    """Everything that defines a model's training state: its variables and its optimizers'."""
    return [*model.variables, *(v for opt in info(model).optimizers for v in opt.variables)]


class _OptimizerScheduler(BaseScheduler):
    """A user's Scheduler of optimizer specs, with one optimizer built per scheduled entry (as
    FastEstimator does): ``Scheduler({0: "adam", 10: "adam"})`` restarts Adam's state at epoch 10.
    One optimizer object given at several entries stays one optimizer, with its state."""

    def __init__(self, specs: BaseScheduler,
                 make: Callable[[Any], keras.optimizers.Optimizer]) -> None:
        self.specs = specs
        if isinstance(specs, Scheduler):
            entries = list(specs.epoch_dict.items())
        elif isinstance(specs, RepeatScheduler):
            entries = list(enumerate(specs.repeat_list))
        else:
            raise ConfigError(f"fe.build: an optimizer schedule must be a Scheduler or a "
                              f"RepeatScheduler, got {type(specs).__name__}.")
        by_object: dict[int, keras.optimizers.Optimizer] = {}
        self.built: dict[int, keras.optimizers.Optimizer | None] = {}
        for slot, spec in entries:
            if spec is None:
                self.built[slot] = None
            elif isinstance(spec, keras.optimizers.Optimizer):
                self.built[slot] = by_object.setdefault(id(spec), make(spec))
            else:
                self.built[slot] = make(spec)

    def _slot(self, epoch: int) -> int | None:
        if isinstance(self.specs, RepeatScheduler):
            return epoch % len(self.specs.repeat_list)
        # The user's keys count from the scheduler's own first epoch (1 under fe_dist.fe1).
        keys = [k for k in self.specs.keys if k <= epoch + self.specs.first_epoch]
        return keys[-1] if keys else None

    def get_current_value(self, epoch: int) -> keras.optimizers.Optimizer | None:
        slot = self._slot(epoch)
        return None if slot is None else self.built[slot]

    def get_all_values(self) -> list[keras.optimizers.Optimizer]:
        unique: dict[int, keras.optimizers.Optimizer] = {}
        for opt in self.built.values():
            if opt is not None:
                unique.setdefault(id(opt), opt)
        return list(unique.values())


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
