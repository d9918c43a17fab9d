"""`enable_deterministic`: the same weights and records on every run of a program."""

from __future__ import annotations

import keras
import tensorflow as tf

from fe_dist.distributed import get_context


def enable_deterministic(seed: int) -> None:
    """Seed Python, numpy, TensorFlow and Keras, and make TensorFlow's ops deterministic.

    Call it at the top of the program, before building models or pipelines. Two runs with the
    same seed and the same number of ranks then give identical weights and records (timings
    aside). Deterministic kernels can be slower, on GPUs especially.

    Args:
        seed: The seed of every random generator (model initialisation, dropout). The shuffle
            seed of each epoch is the Estimator's ``seed``.
    """
    get_context()  # pin first: both settings below start TensorFlow's runtime
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
