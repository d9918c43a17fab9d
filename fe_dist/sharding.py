"""How a global batch is split over ranks.

Every rank draws the same permutation of the training set each epoch (seed + epoch). Step ``s``
uses global indices ``perm[s*B:(s+1)*B]``; rank ``r`` takes its contiguous chunk of that global
batch. Chunks differ in size by at most one, the first ``B % N`` ranks taking the extra sample.
The last incomplete global batch of an epoch is dropped, so every rank runs the same steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def per_rank_batch_sizes(global_batch: int, size: int) -> list[int]:
    """Each rank's share of ``global_batch`` samples."""
    base, extra = divmod(global_batch, size)
    return [base + (1 if r < extra else 0) for r in range(size)]


def rank_chunk(global_batch: int, size: int, rank: int) -> slice:
    """The positions of rank ``rank``'s samples within a global batch."""
    sizes = per_rank_batch_sizes(global_batch, size)
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    """Optimizer steps in an epoch (full global batches only)."""
    return num_samples // global_batch


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffle of epoch ``epoch``: the same on every rank."""
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def train_indices(num_samples: int, global_batch: int, size: int, rank: int, seed: int,
                  epoch: int) -> np.ndarray:
    """Rank ``rank``'s sample indices for each step of ``epoch``, shape (steps, per-rank batch)."""
    steps = steps_per_epoch(num_samples, global_batch)
    perm = epoch_permutation(num_samples, seed, epoch)[:steps * global_batch]
    return perm.reshape(steps, global_batch)[:, rank_chunk(global_batch, size, rank)]


def micro_batch_sizes(local_batch: int, micro_batch: int) -> list[int]:
    """How a rank's batch splits for gradient accumulation: full micro-batches of
    ``micro_batch`` samples, then the remainder (an uneven last micro-batch)."""
    full, rest = divmod(local_batch, micro_batch)
    return [micro_batch] * full + ([rest] if rest else [])


def micro_steps(entry: Any, rank: int) -> int:
    """Calls of the train step per optimizer step on ``rank`` in the plan epoch ``entry``: the
    number of its micro-batches under gradient accumulation, else 1."""
    if entry.micro_batches <= 1:
        return 1
    return len(micro_batch_sizes(entry.per_rank_batch[rank], entry.micro_batch))


def eval_shard(num_samples: int, size: int, rank: int) -> slice:
    """Rank ``rank``'s contiguous share of the eval set (every sample on exactly one rank)."""
    sizes = per_rank_batch_sizes(num_samples, size)
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])
