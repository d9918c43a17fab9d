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
from typing import Any, Mapping, Sequence

import numpy as np

from fe_dist.build import state_variables
from fe_dist.errors import ConfigError
from fe_dist.helper_models import HelperModel
from fe_dist.schedule import Plan, first_difference

FILENAME = "fe_dist_checkpoint.npz"
_META = "__meta__"
_HELPER = "helper:"  # prefix of the arrays of models held by ops (fe_dist.helper_models)
FORMAT = 2


def path(directory: str | os.PathLike) -> Path:
    """The checkpoint file in ``directory``."""
    return Path(directory) / FILENAME


def save(directory: str | os.PathLike, variables: Mapping[str, Sequence[np.ndarray]],
         epoch: int, plan: Plan, records: list[dict[str, Any]],
         helpers: Sequence[HelperModel] = (),
         traces: list[dict[str, Any]] | None = None,
         noise: list[float] | None = None) -> Path:
    """Write the state after ``epoch`` (atomic replace of the previous checkpoint): each model's
    ``variables`` (`fe_dist.build.state_variables` values, by model name), the variables of the
    ``helpers`` (models user ops call themselves; they have no optimizer) and the ``traces``'
    state (`Traces.get_state`, JSON-ready), and the noise scale's moving averages under an
    `AdaptiveBatch`. `fe_dist.run_state` writes and reads it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name, values in sorted(variables.items()):
        for i, value in enumerate(values):
            arrays[f"{name}/{i}"] = np.asarray(value)
    for helper in helpers:
        for i, var in enumerate(helper.variables):
            arrays[f"{_HELPER}{helper.name}/{i}"] = np.asarray(var)
    meta = {"format": FORMAT, "epoch": epoch, "plan": plan.to_dict(), "records": records,
            "traces": traces or [], "noise": noise}
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


# How the run is laid out on the hardware, not what it computes: the per-rank shares and the
# micro-batches depend on the number of ranks (and max_rank_batch, a memory setting), while the
# update of every step is the one on the whole global batch.
_LAYOUT_KEYS = ("per_rank_batch", "micro_batch", "micro_batches")


def check_compatible(saved: dict[str, Any], current: Plan, epochs_done: int, file: Path) -> None:
    """Raise unless ``current`` runs the ``epochs_done`` epochs the checkpoint has trained
    exactly as ``saved`` planned them.

    Only the rank-independent program must match (seed, data, models, and per epoch the
    global batch, steps, ops, trained models, optimizers with their settings, learning rates,
    eval), so a run may resume on any number of ranks, with any ``max_rank_batch`` and any
    ``gradient_compression`` or ``allreduce``. The trained epochs' optimizer settings and
    rates must match: with other ones the resumed run would not continue the run it resumes
    (to change a rate from epoch E on, schedule it: ``lr=Scheduler({0: a, E: b})``). The epochs after the checkpoint are free:
    a run may be extended (``epochs=10`` after ``epochs=5``) or its later schedule changed.

    Args:
        saved: The plan stored in the checkpoint (`Plan.to_dict`).
        current: The plan of the program resuming.
        epochs_done: Epochs the checkpoint has trained (its last epoch + 1).
        file: The checkpoint file, for messages.

    Raises:
        ConfigError: ``current`` has fewer epochs than ``epochs_done``, or plans one of them
            differently; the message names the epoch and item.
    """
    current = current.to_dict()
    planned = len(current["epochs"])
    if planned < epochs_done:
        raise ConfigError(f"Checkpoint {file} has already trained {epochs_done} epochs, but "
                          f"this Estimator has epochs={planned}; the weights cannot go back. "
                          f"Set epochs to {epochs_done} or more to resume (equal: nothing left "
                          "to train), or use another checkpoint_dir to start over.")
    if "lr_warmup_steps" not in saved:  # a checkpoint from before warm-ups were planned
        current = {k: v for k, v in current.items() if k != "lr_warmup_steps"}
    diff = first_difference(_trained_part(saved, epochs_done), _trained_part(current, epochs_done),
                            "the checkpoint", "this program")
    if diff is not None:
        raise ConfigError(f"Checkpoint {file} was written by a different program: {diff}. "
                          f"Resume with the same schedules, data and models for epochs 0 to "
                          f"{epochs_done - 1}, or use another checkpoint_dir.")


def _trained_part(plan: dict[str, Any], epochs_done: int) -> dict[str, Any]:
    """The rank-independent part of ``plan`` that decides epochs 0 .. epochs_done - 1."""
    # The data fingerprint is left out: a resume may read a re-exported or extended copy of the
    # data with the same samples, and checkpoints older than fingerprints have none. So is how
    # gradients travel (Network gradient_compression, allreduce): like the number of ranks it
    # decides how each step's sum is communicated (fp16 rounds it), not which update is made.
    part = {k: v for k, v in plan.items()
            if k not in ("world_size", "epochs", "data_fingerprint", "network")}
    # Signature epochs up to epochs_done - 1 follow from the values of those epochs alone.
    part["signature_epochs"] = [e for e in plan["signature_epochs"] if e < epochs_done]
    part["epochs"] = [{k: v for k, v in e.items() if k not in _LAYOUT_KEYS}
                      for e in plan["epochs"][:epochs_done]]
    return part


def restore_helpers(helpers: Sequence[HelperModel], arrays: dict[str, np.ndarray],
                    file: Path) -> None:
    """Assign the saved values to the variables of the ``helpers``."""
    for helper in helpers:
        for i, var in enumerate(helper.variables):
            key = f"{_HELPER}{helper.name}/{i}"
            if key not in arrays or tuple(arrays[key].shape) != tuple(var.shape):
                # Restoring nothing would go on with other weights than the run used so far.
                raise ConfigError(f"Checkpoint {file} does not hold the weights of model "
                                  f"{helper.name} ({helper.op}) as this program builds it "
                                  f"(variable {key}); it was written by another program or an "
                                  "fe_dist that did not save models held by ops. Resume with "
                                  "the program that wrote it, or use another checkpoint_dir.")
            var.assign(arrays[key])


def model_values(models: dict[str, Any], arrays: dict[str, np.ndarray],
                 file: Path) -> dict[str, list[np.ndarray]]:
    """The saved values of every model's and its optimizers' variables, by model name, checked
    to fit ``models`` (assigned by `fe_dist.run_state.restore`)."""
    values: dict[str, list[np.ndarray]] = {}
    for name, model in sorted(models.items()):
        values[name] = []
        for i, var in enumerate(state_variables(model)):
            key = f"{name}/{i}"
            if key not in arrays or tuple(arrays[key].shape) != tuple(var.shape):
                raise ConfigError(f"Checkpoint {file} does not fit model {name!r} (variable "
                                  f"{key}). Resume with the models that wrote it.")
            values[name].append(arrays[key])
    return values
