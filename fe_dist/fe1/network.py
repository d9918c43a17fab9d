"""FastEstimator 1.x's Network: models train where their `UpdateOp` is scheduled."""

from __future__ import annotations

from typing import Any, Sequence

import keras

from fe_dist.errors import ConfigError
from fe_dist.fe1.op.tensorop.model import UpdateOp
from fe_dist.network import Network as _Network
from fe_dist.schedule import all_values


class Network(_Network):
    """The ops of a FastEstimator 1.x program: ``ModelOp``, loss ops, ``UpdateOp`` (each may
    be an fe1 ``EpochScheduler`` / ``RepeatScheduler`` of ops; epochs from 1).

    A model trains in an epoch exactly when an ``UpdateOp`` for it is active in train mode
    then; its objective is the mean of the UpdateOp's ``loss_name`` over the global batch plus
    ``sum(model.losses)``, as FastEstimator's UpdateOp adds them. Everything else is fe_dist's
    `fe_dist.Network` (same engine, same distribution).

    Args:
        ops: The ops.
        pops: FastEstimator's post-processing ops; not supported (None only).
        **kwargs: `fe_dist.Network`'s own options (gradient_compression, allreduce).
    """

    first_epoch = 1

    def __init__(self, ops: Sequence[Any], pops: Any = None, **kwargs: Any) -> None:
        if pops:
            raise ConfigError("fe1.Network: pops (post-processing ops) are not supported by "
                              "fe_dist; compute them in a trace.")
        super().__init__(ops, **kwargs)
        losses: dict[str, str] = {}
        for item in self.ops:
            for op in all_values(item):
                if not isinstance(op, UpdateOp):
                    continue
                name = op.model.model_name
                if self.models.get(name) is not op.model:
                    raise ConfigError(f"{op}: model {name!r} has no ModelOp in this Network; "
                                      "add ModelOp(model=..., inputs=..., outputs=...).")
                if losses.setdefault(name, op.loss_name) != op.loss_name:
                    raise ConfigError(f"Model {name!r} has UpdateOps on two loss keys, "
                                      f"{losses[name]!r} and {op.loss_name!r}; fe_dist trains "
                                      "a model on one loss key. Combine them in one key.")
        for name, loss in losses.items():
            self.models[name].fe_dist.loss_name = loss

    def trained_models(self, epoch: int) -> list[keras.Model]:
        """Models of the UpdateOps active at the run's ``epoch`` (from 0) in train mode."""
        names: list[str] = []
        for op in self.get_ops(epoch, "train"):
            if isinstance(op, UpdateOp) and op.model.model_name not in names:
                names.append(op.model.model_name)
        return [self.models[n] for n in names]
