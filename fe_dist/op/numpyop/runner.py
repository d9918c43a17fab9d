"""Running pipeline ops when some are NumpyOps, and checking them before training."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.draws import Draws
from fe_dist.op.numpyop.numpyop import DRAWS, NumpyOp
from fe_dist.op.op import Op, op_inputs, run_ops, store_outputs


def needs_draws(ops: Sequence[Op]) -> bool:
    """Whether any of ``ops`` is a NumpyOp (so batches need their `Draws`)."""
    return any(isinstance(op, NumpyOp) for op in ops)


def run_pipeline_ops(ops: Sequence[Op], store: dict[str, Any], state: dict[str, Any],
                     draws: Draws, first_index: int = 0) -> dict[str, Any]:
    """`run_ops` for a pipeline holding NumpyOps: each NumpyOp runs on the whole batch
    (`NumpyOp.forward_batch`) with its own stream of ``draws``, keyed by its place in the
    epoch's op list: ``first_index`` + its place in ``ops`` (1 when a source applied the
    first op while decoding, so folders and arrays draw alike)."""
    for index, op in enumerate(ops, start=first_index):
        if not isinstance(op, NumpyOp):
            run_ops([op], store, state)
            continue
        store_outputs(op, op.forward_batch(op_inputs(op, store),
                                           {**state, DRAWS: draws.stream(index)}), store)
    return store


def check_numpy_ops(pipeline_ops: Sequence[Op], network_ops: Sequence[Op],
                    spec: dict[str, tuple[str, tuple[int | None, ...]]], epoch: int,
                    mode: str, column: Callable[[str], np.ndarray | None] | None = None) -> None:
    """Raise a ConfigError if a NumpyOp of ``pipeline_ops`` gets input it cannot handle
    (``spec``: the data's {key: (dtype, per-sample shape)}), or if one is in the Network.

    The pipeline ops are traced once on symbolic batches (no data is read), so each op sees the
    dtypes and shapes the ops before it produce. An op reading a key straight from the data
    also checks its values when ``column(key)`` reads them cheaply (labels): a bad label found
    while training would stop one rank in the middle of an epoch.
    """
    written: set[str] = set()
    for op in pipeline_ops:
        if isinstance(op, NumpyOp) and column is not None:
            for key in op.inputs:
                values = None if key in written else column(key)
                problem = None if values is None else op.check_data(key, np.asarray(values))
                if problem:
                    raise ConfigError(f"Epoch {epoch} ({mode}): pipeline op {op}: {problem}")
        written.update(op.outputs)
    for op in network_ops:
        if isinstance(op, NumpyOp):
            raise ConfigError(f"Epoch {epoch} ({mode}): {op} is a NumpyOp in the Network ops; "
                              "NumpyOps run per sample in the Pipeline. Move it to "
                              "Pipeline(ops=[...]).")
    if not needs_draws(pipeline_ops):
        return
    with tf.Graph().as_default():
        store = {k: tf.compat.v1.placeholder(_dtype(dtype), [None, *shape], name=k)
                 for k, (dtype, shape) in spec.items()}
        batch = tf.compat.v1.placeholder(tf.int64, [], name="batch")
        draws = Draws.for_batch(tf.constant(0, tf.uint32), tf.constant(0, tf.int64), batch)
        state = {"mode": mode}
        for index, op in enumerate(pipeline_ops):
            if isinstance(op, NumpyOp) and all(k in store for k in op.inputs):
                problem = op.check_spec([tf.TensorSpec.from_tensor(store[k])
                                         for k in op.inputs])
                if problem:
                    raise ConfigError(f"Epoch {epoch} ({mode}): pipeline op {op}: {problem}")
            try:
                run_pipeline_ops([op], store, state, draws.stream(index))
            except ConfigError as err:
                if str(err).startswith("Epoch "):
                    raise
                raise ConfigError(f"Epoch {epoch} ({mode}): {err}") from err
            except KeyError:  # a missing key: check_keys names it
                return


def _dtype(name: str) -> tf.DType:
    try:
        return tf.as_dtype(name)
    except TypeError:  # numpy text ("<U12") or objects: strings in tf.data
        return tf.string
