"""`Minmax`: scale each sample to [0, 1]."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.op.tensorop.tensorop import TensorOp, map_inputs

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


class Minmax(TensorOp):
    """Per-sample min-max normalisation: ``(x - min(x)) / max(max(x) - min(x), epsilon)``.

    Min and max are taken over each sample's own values (every axis but the batch axis), as in
    FastEstimator. The output is float32.

    Args:
        inputs: Key(s) to normalise.
        outputs: Key(s) to write, one per input.
        mode: "train", "eval" or None for both.
        epsilon: Floor of the denominator, so a constant sample maps to 0.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None, epsilon: float = 1e-7) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.epsilon = epsilon

    def forward(self, data: tf.Tensor | list[tf.Tensor],
                state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        return map_inputs(self._minmax, data)

    @_static_helper
    def _minmax(self, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        axes = list(range(1, x.shape.rank))
        lo = tf.reduce_min(x, axis=axes, keepdims=True)
        hi = tf.reduce_max(x, axis=axes, keepdims=True)
        return (x - lo) / tf.maximum(hi - lo, self.epsilon)
