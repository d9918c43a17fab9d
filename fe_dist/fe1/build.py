"""FastEstimator 1.x's ``fe.build(model_fn=, optimizer_fn=)``."""

from __future__ import annotations

import itertools
import os
from typing import Any, Callable

import keras

from fe_dist.build import build as _build
from fe_dist.errors import ConfigError

_count = itertools.count()

# The loss key of a model no UpdateOp names yet; the fe1 Network sets the UpdateOp's.
UNSET_LOSS = "loss"


def build(model_fn: Callable[[], keras.Model], optimizer_fn: Any,
          model_name: str | None = None, weights_path: str | os.PathLike | None = None,
          mixed_precision: bool = False, model_names: str | None = None) -> keras.Model:
    """Build a model as FastEstimator 1.x does, on fe_dist's engine.

    The model trains where an `UpdateOp` for it is active, on the UpdateOp's ``loss_name``
    (set when the `Network` is made), with ``model.losses`` (regularizers) added as
    FastEstimator's UpdateOp adds them.

    Args:
        model_fn: A function returning a ``keras.Model`` (e.g. ``LeNet``).
        optimizer_fn: An optimizer name ("adam", "sgd": Keras' defaults, SGD at 0.01), a
            function returning a Keras optimizer, or an fe1 ``EpochScheduler`` /
            ``RepeatScheduler`` of those (one optimizer per entry, with its own state).
        model_name: Unique name; by default "model", then "model1", "model2", ...
        weights_path: Weights to load after building (a Keras ``.weights.h5``).
        mixed_precision: As `fe_dist.build`.
        model_names: FastEstimator 1.0's name of ``model_name``.
    """
    if model_name is None:
        model_name = model_names
    if model_name is None:
        n = next(_count)
        model_name = "model" if n == 0 else f"model{n}"
    if isinstance(optimizer_fn, (list, tuple)):
        raise ConfigError(f"fe1.build({model_name!r}): one model_fn returning one model per "
                          "build; build several models with several fe.build calls.")
    model = _build(model_def=model_fn, model_name=model_name, optimizer=optimizer_fn,
                   loss_name=UNSET_LOSS, mixed_precision=mixed_precision)
    if weights_path is not None:
        model.load_weights(str(weights_path))
    return model
