"""FastEstimator 1.x's ``fe.trace.io``: BestModelSaver (``metric=``) and ModelSaver."""

from __future__ import annotations

import os

import keras

from fe_dist.trace import io as _io
from fe_dist.trace.io import ModelSaver


class BestModelSaver(_io.BestModelSaver):
    """Save ``model``'s weights when the eval ``metric`` improves (FastEstimator 1.x's names).

    Rank 0 writes ``{save_dir}/{model_name}_best_{metric}.weights.h5``; see
    `fe_dist.trace.io.BestModelSaver`.

    Args:
        model: A model of the Network.
        save_dir: The directory rank 0 writes to.
        metric: The eval metric (None: the model's loss key, from its UpdateOp).
        save_best_mode: "min" or "max".
        load_best_final: Put the best weights back into the model at the end of fit().
    """

    def __init__(self, model: keras.Model, save_dir: str | os.PathLike, metric: str | None = None,
                 save_best_mode: str = "min", load_best_final: bool = False) -> None:
        super().__init__(model=model, save_dir=save_dir, monitor=metric,
                         save_best_mode=save_best_mode, load_best_final=load_best_final)


__all__ = ["BestModelSaver", "ModelSaver"]
