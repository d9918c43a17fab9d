"""`Sometimes`: apply an op to a random share of the samples."""

from __future__ import annotations

import numbers
from typing import Any

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import DRAWS, BatchOp, NumpyOp


class Sometimes(BatchOp):
    """Apply ``numpy_op`` to each sample with probability ``prob``; other samples pass through
    unchanged (to the op's output keys).

    The choice is a per-sample draw. The op runs on the whole batch and the chosen samples are
    kept, so it must not change shapes or dtypes (a skipped sample keeps its own).

    Args:
        numpy_op: The op (a NumpyOp: built-in or your own); its inputs, outputs and mode are
            this op's.
        prob: Probability of applying it, in [0, 1].
    """

    def __init__(self, numpy_op: NumpyOp, prob: float = 0.5) -> None:
        if not isinstance(numpy_op, NumpyOp):
            raise ConfigError(f"Sometimes: numpy_op must be a NumpyOp (e.g. HorizontalFlip), got "
                              f"{numpy_op!r}.")
        if not isinstance(prob, numbers.Real) or isinstance(prob, bool) or not 0 <= prob <= 1:
            raise ConfigError(f"Sometimes({type(numpy_op).__name__}): prob must be a number in "
                              f"[0, 1], got {prob!r}.")
        if len(numpy_op.inputs) != len(numpy_op.outputs):
            raise ConfigError(f"Sometimes: {numpy_op} has {len(numpy_op.inputs)} input keys and "
                              f"{len(numpy_op.outputs)} output keys; a skipped sample passes its "
                              "inputs through, so give one output per input.")
        super().__init__(inputs=numpy_op.inputs, outputs=numpy_op.outputs, mode=numpy_op.mode)
        self.numpy_op, self.prob = numpy_op, float(prob)

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        draws = state[DRAWS]
        applied = self.numpy_op.forward_batch(data, {**state, DRAWS: draws.stream(0)})
        chosen = draws.stream(1).uniform(1)[:, 0] < self.prob  # [batch]
        xs = data if isinstance(data, list) else [data]
        ys = applied if isinstance(applied, list) else [applied]
        outs = [select(chosen, y, x, self, key) for x, y, key in zip(xs, ys, self.outputs)]
        return outs if isinstance(data, list) else outs[0]

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        return self.numpy_op.check_spec(specs)


def select(chosen: tf.Tensor, if_true: tf.Tensor, if_false: tf.Tensor, op: Any,
           key: str) -> tf.Tensor:
    """Per sample (``chosen``: bool ``[batch]``), ``if_true`` or ``if_false``; a ConfigError
    when their per-sample shapes or dtypes differ."""
    if if_true.dtype != if_false.dtype or not if_true.shape[1:].is_compatible_with(
            if_false.shape[1:]) or if_true.shape.rank != if_false.shape.rank:
        raise ConfigError(
            f"{op}: on key {key!r} one choice gives {if_true.dtype.name}"
            f"{tuple(if_true.shape.as_list()[1:]) if if_true.shape.rank is not None else ''} "
            f"and another {if_false.dtype.name}"
            f"{tuple(if_false.shape.as_list()[1:]) if if_false.shape.rank is not None else ''}, "
            "but every sample of a batch needs one shape and dtype. Put ops that change the "
            "shape (PadIfNeeded, RandomCrop, Onehot) outside Sometimes/OneOf, or make the "
            "choices agree.")
    mask = tf.reshape(chosen, tf.concat([tf.shape(chosen), tf.ones(
        [tf.rank(if_true) - 1], tf.int32)], axis=0))
    return tf.where(mask, if_true, if_false)
