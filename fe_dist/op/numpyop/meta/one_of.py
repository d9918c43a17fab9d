"""`OneOf`: apply one of several ops, chosen per sample."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.meta.sometimes import select
from fe_dist.op.numpyop.numpyop import DRAWS, BatchOp, NumpyOp


class OneOf(BatchOp):
    """Apply one of ``numpy_ops`` to each sample, chosen uniformly per sample.

    Every op runs on the whole batch and each sample keeps the output of its choice, so the ops
    must share inputs, outputs and mode, and give outputs of one shape and dtype.

    Args:
        *numpy_ops: The NumpyOps to choose from (at least one).
    """

    def __init__(self, *numpy_ops: NumpyOp) -> None:
        if not numpy_ops:
            raise ConfigError("OneOf needs at least one op: OneOf(HorizontalFlip(...), "
                              "Rotate(...)).")
        first = numpy_ops[0]
        for op in numpy_ops:
            if not isinstance(op, NumpyOp):
                raise ConfigError(f"OneOf: every op must be a NumpyOp (e.g. HorizontalFlip), got "
                                  f"{op!r}.")
            if (op.inputs, op.outputs, op.mode) != (first.inputs, first.outputs, first.mode):
                raise ConfigError(
                    f"OneOf: {op} and {first} differ in inputs, outputs or mode; every op in a "
                    "OneOf must read and write the same keys in the same modes.")
        super().__init__(inputs=first.inputs, outputs=first.outputs, mode=first.mode)
        self.numpy_ops = tuple(numpy_ops)

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        draws = state[DRAWS]
        n = len(self.numpy_ops)
        choice = tf.minimum(tf.cast(draws.stream(n).uniform(1)[:, 0] * n, tf.int32), n - 1)
        results = [self.numpy_ops[i].forward_batch(data, {**state, DRAWS: draws.stream(i)})
                   for i in range(n)]
        results = [r if isinstance(r, list) else [r] for r in results]
        outs = results[0]
        for i in range(1, n):
            outs = [select(tf.equal(choice, i), y, x, self, key)
                    for x, y, key in zip(outs, results[i], self.outputs)]
        return outs if isinstance(data, list) else outs[0]

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        for op in self.numpy_ops:
            problem = op.check_spec(specs)
            if problem:
                return f"in {type(op).__name__}: {problem}"
        return None
