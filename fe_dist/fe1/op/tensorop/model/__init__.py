"""FastEstimator 1.x's ``fe.op.tensorop.model``: ModelOp and UpdateOp."""

from __future__ import annotations

from typing import Any, Iterable

import keras

from fe_dist.build import info
from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.op.tensorop.tensorop import TensorOp


class UpdateOp(TensorOp):
    """Train ``model`` on the key ``loss_name`` while this op is active (FastEstimator 1.x).

    The update itself is fe_dist's: each rank's share of the loss over the global batch plus
    ``sum(model.losses)`` weighted by its share, gradients summed over ranks, one optimizer
    step per global batch (see docs/concepts.md, "What happens on N ranks").

    Args:
        model: A model made by ``fe.build``.
        loss_name: The loss key to minimise.
        mode: "train" (FastEstimator's default; the only mode that updates).
        merge_grad: Gradient accumulation over this many batches; only 1 is supported (use
            ``Estimator(max_rank_batch=...)``: a larger global batch split in micro-batches).
        defer: FastEstimator's deferred update; fe_dist applies every update after the whole
            forward and backward pass of the step, so it is accepted either way.
    """

    def __init__(self, model: keras.Model, loss_name: str,
                 mode: str | Iterable[str] | None = "train", merge_grad: int = 1,
                 defer: bool = False) -> None:
        super().__init__(inputs=loss_name, outputs=None, mode=mode)
        info(model)
        if mode != "train":
            raise ConfigError(f"UpdateOp(model {model.model_name!r}): mode must be 'train' "
                              f"(a model updates in training only), got {mode!r}.")
        if merge_grad != 1:
            raise ConfigError(
                f"UpdateOp(model {model.model_name!r}, merge_grad={merge_grad!r}): fe_dist "
                "accumulates gradients within one optimizer step instead: give the global "
                "batch you want per update as batch_size and Estimator(max_rank_batch=...) for "
                "the samples that fit in one device's memory.")
        self.model = model
        self.loss_name = loss_name

    def forward(self, data: Any, state: dict[str, Any]) -> list:
        return []  # the engine reads the loss key and applies the update


__all__ = ["ModelOp", "UpdateOp"]
