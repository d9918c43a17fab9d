"""Checkpoints: after each epoch rank 0 writes every model's and optimizers' variables, the
epoch, the shuffle seed, the run plan and the records so far, atomically.

The file is written under a temporary name, flushed to disk and renamed over the previous one, so
a crash mid-write leaves the previous checkpoint readable. The shuffle of epoch e is a pure
function of (seed, e), so seed and epoch are the whole data-order state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from fe_dist.build import state_variables
from fe_dist.errors import ConfigError
from fe_dist.schedule import Plan, first_difference

FILENAME = "fe_dist_checkpoint.npz"
_META = "__meta__"
FORMAT = 2


def path(directory: str | os.PathLike) -> Path:
    """The checkpoint file in ``directory``."""
    return Path(directory) / FILENAME


def save(directory: str | os.PathLike, models: dict[str, Any], epoch: int, plan: Plan,
         records: list[dict[str, Any]]) -> Path:
    """Write the state after ``epoch`` (atomic replace of the previous checkpoint)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, model in sorted(models.items()):
        for i, var in enumerate(state_variables(model)):
            arrays[f"{name}/{i}"] = np.asarray(var)
    meta = {"format": FORMAT, "epoch": epoch, "plan": plan, "records": records}
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    final = path(directory)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return final


def load(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(meta, arrays) of the checkpoint in ``directory``, or None when there is none."""
    file = path(directory)
    if not file.exists():
        return None
    with np.load(file) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop(_META).tobytes().decode())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"Checkpoint {file} has format {meta.get('format')}, this fe_dist "
                          f"reads format {FORMAT}. Resume with the fe_dist that wrote it.")
    return meta, arrays


def check_compatible(saved: Plan, current: Plan, file: Path) -> None:
    """Raise unless ``saved`` and ``current`` describe the same program (any number of ranks:
    the global batch, not the per-rank batch, defines the run)."""
    diff = first_difference(_rank_free(saved), _rank_free(current))
    if diff is not None:
        raise ConfigError(f"Checkpoint {file} was written by a different program: {diff} "
                          "('rank 0' is the checkpoint, 'this rank' the program now). Resume "
                          "with the same schedules, data and models, or use another "
                          "checkpoint_dir.")


def _rank_free(plan: Plan) -> Plan:
    plan = {k: v for k, v in plan.items() if k != "world_size"}
    plan["epochs"] = [{k: v for k, v in e.items() if k != "per_rank_batch"}
                      for e in plan["epochs"]]
    return plan


def restore(models: dict[str, Any], arrays: dict[str, np.ndarray], file: Path) -> None:
    """Assign the saved values to every model and optimizer variable."""
    for name, model in sorted(models.items()):
        for i, var in enumerate(state_variables(model)):
            key = f"{name}/{i}"
            if key not in arrays or tuple(arrays[key].shape) != tuple(var.shape):
                raise ConfigError(f"Checkpoint {file} does not fit model {name!r} (variable "
                                  f"{key}). Resume with the models that wrote it.")
            var.assign(arrays[key])
