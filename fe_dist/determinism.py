"""Random streams: reproducible runs (`enable_deterministic`), and different random numbers on
every rank (Dropout masks, random ops), drawn from (seed, rank, epoch).

Model initialisation draws from the seed itself on every rank (and rank 0's start state is
broadcast anyway), so one process and rank 0 of N ranks start from the same weights. What must
differ by rank is everything drawn during training: with the same streams on every rank, N ranks
would apply the same Dropout mask to N different shards, which one process never does. So at the
start of every epoch each model's Keras random-seed state is set from (seed, rank, epoch), and
the random ops of pipeline and network ops (``tf.random.*`` in a TensorOp) draw from a graph
seed set from (seed, rank) when fe_dist traces them (`seed_traced_ops`). A run with the same
seed and number of ranks repeats exactly; a run on another number of ranks draws other numbers,
so with Dropout or random ops "N ranks = 1 process" holds in distribution, not bit for bit.

TensorFlow's global seed, like Python's and numpy's global generators, stays the plain seed on
every rank: data a program makes or orders with them is the same everywhere. That matters for
streams: ``ds.shuffle(n, seed=7)`` and ``tf.data.Dataset.list_files(pattern, seed=s)`` combine
their seed with the global one, and every rank must read a stream in one order (each rank takes
its chunk of each global batch of it).
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from fe_dist.distributed import get_context

_seed: int | None = None  # set by enable_deterministic
_process_entropy = int.from_bytes(os.urandom(4), "little")  # runs without a seed


def enable_deterministic(seed: int) -> None:
    """Seed Python, numpy, TensorFlow and Keras, and make TensorFlow's ops deterministic.

    Call it at the top of the program, before building models or pipelines. Two runs with the
    same seed and the same number of ranks then give identical weights and records (timings
    aside). Deterministic kernels can be slower, on GPUs especially.

    Args:
        seed: The seed of every random generator (model initialisation, dropout). The shuffle
            seed of each epoch is the Estimator's ``seed``. Ranks draw different streams from it
            during training (see the module docstring); TensorFlow's global seed is ``seed`` on
            every rank.
    """
    global _seed
    get_context()  # pin first: both settings below start TensorFlow's runtime
    keras.utils.set_random_seed(seed)  # TensorFlow's global seed too: the same on every rank
    tf.config.experimental.enable_op_determinism()
    _seed = seed


def seed_traced_ops() -> None:
    """Called while TensorFlow traces fe_dist's ops (a ``tf.data`` map of pipeline ops, a train
    or eval step): under `enable_deterministic`, the random ops traced into this graph from now
    on (``tf.random.normal`` in a user's TensorOp, with or without an op seed) draw from this
    rank's stream, (seed, rank). Rank 0 keeps the plain seed, as one process does. Outside a
    trace (eager) it does nothing: the global seed must stay the same on every rank."""
    rank = get_context().rank
    if _seed is None or rank == 0 or tf.executing_eagerly():
        return
    # The graph-level seed of the function being traced, not the global seed.
    tf.compat.v1.get_default_graph().seed = stream_seed(_seed, rank)


def stream_seed(seed: int, rank: int, epoch: int | None = None) -> int:
    """A 31-bit seed for ``rank`` (and ``epoch``), independent across ranks and epochs."""
    keys = [seed, rank] if epoch is None else [seed, rank, epoch]
    return int(np.random.SeedSequence(keys).generate_state(1)[0] >> 1)


def reseed_models(models: list[keras.Model], rank: int, epoch: int) -> None:
    """Set the random-seed state of every Keras layer of ``models`` (Dropout, random
    augmentation layers) for ``epoch`` on ``rank``: reproducible with `enable_deterministic`,
    different on every rank, and the same after a resume as in an uninterrupted run."""
    base = _seed if _seed is not None else _process_entropy
    for m, model in enumerate(models):
        states = [v for v in model.variables if v.path.endswith("seed_generator_state")]
        for i, state in enumerate(states):
            value = stream_seed(base, rank, epoch * 1_000_003 + m * 1009 + i)
            state.assign(np.array([value, 0], dtype=state.dtype))
