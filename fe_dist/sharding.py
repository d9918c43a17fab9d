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
                  epoch: int, steps: int | None = None) -> np.ndarray:
    """Rank ``rank``'s sample indices for each step of ``epoch``, shape (steps, per-rank batch).

    ``steps`` (FastEstimator's ``train_steps_per_epoch``) cuts the epoch short, or extends it
    past one pass: the epoch's permutation is followed by further ones drawn from (seed, epoch,
    pass), so every sample is used once per pass. None: every full global batch, once."""
    steps = steps_per_epoch(num_samples, global_batch) if steps is None else steps
    perm = epoch_permutation(num_samples, seed, epoch)
    passes = 1
    while len(perm) < steps * global_batch:
        perm = np.concatenate([perm, np.random.default_rng([seed, epoch, passes]).permutation(
            num_samples)])
        passes += 1
    perm = perm[:steps * global_batch]
    return perm.reshape(steps, global_batch)[:, rank_chunk(global_batch, size, rank)]


def last_batch_indices(num_samples: int, global_batch: int, size: int, rank: int, seed: int,
                       epoch: int) -> np.ndarray:
    """Rank ``rank``'s indices of the epoch's last, partial global batch (the samples after
    the full batches, FastEstimator's ``drop_last=False``), its contiguous chunk of them."""
    full = steps_per_epoch(num_samples, global_batch) * global_batch
    rest = epoch_permutation(num_samples, seed, epoch)[full:]
    return rest[rank_chunk(len(rest), size, rank)]


def micro_batch_count(global_batch: int, size: int, micro_batch: int | None) -> int:
    """Micro-batches per optimizer step under a per-rank cap of ``micro_batch`` samples (1:
    no accumulation). The same on every rank: the rank with the largest share decides, and the
    others split theirs into as many parts, so per-micro-batch collectives in the forward and
    backward pass (`SyncBatchNormalization`'s) pair up across ranks."""
    if micro_batch is None:
        return 1
    return -(-per_rank_batch_sizes(global_batch, size)[0] // micro_batch)


def micro_batch_sizes(local_batch: int, count: int) -> list[int]:
    """How a rank's batch of ``local_batch`` samples splits into ``count`` micro-batches for
    gradient accumulation: consecutive parts whose sizes differ by at most one, the larger
    first (33 in 3: [11, 11, 11]; 17 in 2: [9, 8])."""
    return per_rank_batch_sizes(local_batch, count)


def micro_steps(entry: Any) -> int:
    """Calls of the train step per optimizer step in the plan epoch ``entry``: its number of
    micro-batches under gradient accumulation (the same on every rank), else 1."""
    return max(entry.micro_batches, 1)


def eval_shard(num_samples: int, size: int, rank: int) -> slice:
    """Rank ``rank``'s contiguous share of the eval set (every sample on exactly one rank)."""
    sizes = per_rank_batch_sizes(num_samples, size)
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])
