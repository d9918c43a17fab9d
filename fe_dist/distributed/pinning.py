"""Device and thread pinning: one GPU per rank, or a fair share of the CPU cores."""

from __future__ import annotations

import os
import warnings

import tensorflow as tf


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pin(local_rank: int, local_size: int) -> tuple[int, str]:
    """Pin this rank before TensorFlow starts its runtime.

    GPU machines: the rank sees only GPU ``local_rank`` (memory growth on). CPU: intra-op threads
    = cores // ranks on this host, so co-located ranks do not oversubscribe the cores.
    ``FE_DIST_THREADS`` overrides the thread count.

    Returns:
        (intra-op threads, device name).
    """
    threads = int(os.environ.get("FE_DIST_THREADS", 0)) or max(1, available_cores() // local_size)
    device = "CPU"
    try:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            gpu = gpus[local_rank % len(gpus)]
            tf.config.set_visible_devices(gpu, "GPU")
            tf.config.experimental.set_memory_growth(gpu, True)
            device = f"GPU:{local_rank % len(gpus)}"
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError as err:  # TF's runtime already started: settings are fixed now
        warnings.warn(f"fe_dist could not pin this rank ({err}). Call fe_dist.distributed.init() "
                      "(or fe.build / fe.Pipeline) before creating TensorFlow tensors.")
        threads = tf.config.threading.get_intra_op_parallelism_threads() or available_cores()
    return threads, device
