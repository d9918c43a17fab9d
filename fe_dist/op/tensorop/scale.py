"""`Scale`: multiply by a constant."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.op.tensorop.tensorop import TensorOp, map_inputs


class Scale(TensorOp):
    """Multiply each input by ``scalar``; the output is float32.

    Args:
        inputs: Key(s) to scale.
        scalar: The factor, e.g. ``1.0 / 255`` for 8-bit images.
        outputs: Key(s) to write, one per input.
        mode: "train", "eval" or None for both.
    """

    def __init__(self, inputs: str | Sequence[str], scalar: float, outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        self.scalar = float(scalar)

    def forward(self, data: tf.Tensor | list[tf.Tensor],
                state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        return map_inputs(lambda x: tf.cast(x, tf.float32) * self.scalar, data)
