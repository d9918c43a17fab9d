"""`BestModelSaver`: keep the weights of the best epoch."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from fe_dist.build import info
from fe_dist.errors import ConfigError
from fe_dist.trace.trace import Data, Trace


class BestModelSaver(Trace):
    """Save ``model``'s weights whenever the monitored eval metric improves.

    Every rank tracks the same best value (the eval metrics are the same on every rank); rank 0
    alone writes ``{save_dir}/{model_name}_best_{monitor}.weights.h5`` (Keras' weights format),
    and a failure to write raises on every rank. Each rank also keeps its own copy of the best
    weights in memory for ``load_best_final``. Logs ``since_best_{monitor}`` (epochs since the
    best) and ``{save_best_mode}_{monitor}`` (the best value). The best value and epoch are kept
    in checkpoints.

    Args:
        model: A model of the Network (made by `fe_dist.build`).
        save_dir: The directory rank 0 writes to (made if missing). Only rank 0's value is
            used, so ``tempfile.mkdtemp()`` (another directory on every rank) is fine; the
            other ranks' directories stay empty.
        monitor: An eval metric: a loss key (the default: the model's ``loss_name``), a loss
            metric or a trace output.
        save_best_mode: "min" or "max": which direction is better.
        load_best_final: Put the best weights back into the model at the end of fit(), on
            every rank.
    """

    local_args = ("save_dir",)  # only rank 0 writes there (and reads, on resume)

    def __init__(self, model: keras.Model, save_dir: str | os.PathLike, monitor: str | None = None,
                 save_best_mode: str = "min", load_best_final: bool = False) -> None:
        loss_name = info(model).loss_name
        self.monitor = monitor or loss_name
        super().__init__(outputs=(f"since_best_{self.monitor}", f"{save_best_mode}_{self.monitor}"),
                         mode="eval")
        if save_best_mode not in ("min", "max"):
            raise ConfigError(f"BestModelSaver: save_best_mode must be 'min' or 'max', got "
                              f"{save_best_mode!r}.")
        self.model = model
        self.save_dir = Path(save_dir)
        self.save_best_mode = save_best_mode
        self.load_best_final = load_best_final
        self.path = self.save_dir / f"{model.model_name}_best_{self.monitor}.weights.h5"
        self.best = math.inf if save_best_mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, data: Data) -> None:
        value = float(data[self.monitor])
        better = value < self.best if self.save_best_mode == "min" else value > self.best
        if better:
            self.best, self.best_epoch = value, self.system.epoch_idx
            self._best_weights = [np.array(w) for w in self.model.get_weights()]
            # Every rank takes the same branch (same metrics). Unwatched, and the others wait
            # for rank 0 inside it: a large model on a slow disk may take longer than the
            # stall timeout, as a checkpoint may.
            with self.system.unwatched(f"rank 0 writing {self.path}"):
                if self.system.is_chief:
                    self.save_dir.mkdir(parents=True, exist_ok=True)
                    self.model.save_weights(str(self.path))
                self.system.gather(None)
        data.write_with_log(self.outputs[0], self.system.epoch_idx - self.best_epoch
                            if self.best_epoch is not None else 0)
        data.write_with_log(self.outputs[1], self.best)

    def on_end(self, data: Data) -> None:
        if not self.load_best_final or self.best_epoch is None:
            return
        weights = self._best_weights
        if weights is None:  # resumed: the best weights are in rank 0's file only
            if self.system.is_chief:
                self.model.load_weights(str(self.path))
            weights = self.system.broadcast(
                [np.array(w) for w in self.model.get_weights()] if self.system.is_chief else None)
        self.model.set_weights(weights)

    def get_state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), state["best_epoch"]
        self._best_weights = None


class ModelSaver(Trace):
    """Save ``model``'s weights every ``frequency`` epochs (FastEstimator's ModelSaver).

    At the end of each training epoch whose number (``system.epoch_idx``: from 1 under
    `fe_dist.fe1`, as in FastEstimator) is a multiple of ``frequency``, rank 0 writes
    ``{save_dir}/{model_name}_epoch_{epoch}.weights.h5`` (Keras 3's weights format; FastEstimator
    on Keras 2 wrote ``.h5``); the other ranks wait for it, and a failure raises on every rank.

    Args:
        model: A model of the Network.
        save_dir: The directory rank 0 writes to (made if missing); only rank 0's is used.
        frequency: Save every this many epochs.
        max_to_keep: Keep only the newest this many files (None or 0: all).
    """

    local_args = ("save_dir",)

    def __init__(self, model: keras.Model, save_dir: str | os.PathLike, frequency: int = 1,
                 max_to_keep: int | None = None) -> None:
        super().__init__(mode="train")
        info(model)
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ConfigError(f"ModelSaver: frequency must be a positive int, got {frequency!r}.")
        if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 0):
            raise ConfigError(f"ModelSaver: max_to_keep must be None or an int >= 0, got "
                              f"{max_to_keep!r}.")
        self.model = model
        self.save_dir = Path(save_dir)
        self.frequency = frequency
        self.max_to_keep = max_to_keep
        self.saved: list[Path] = []

    def on_epoch_end(self, data: Data) -> None:
        epoch = self.system.epoch_idx
        if epoch % self.frequency:
            return
        path = self.save_dir / f"{self.model.model_name}_epoch_{epoch}.weights.h5"
        with self.system.unwatched(f"rank 0 writing {path}"):
            if self.system.is_chief:
                self.save_dir.mkdir(parents=True, exist_ok=True)
                self.model.save_weights(str(path))
                print(f"FastEstimator-ModelSaver: Saved model to {path}", flush=True)
                self.saved.append(path)
                while self.max_to_keep and len(self.saved) > self.max_to_keep:
                    self.saved.pop(0).unlink(missing_ok=True)
            self.system.gather(None)


__all__ = ["BestModelSaver", "ModelSaver"]
