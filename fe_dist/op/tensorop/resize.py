"""`Resize`: resize batches of images."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.tensorop.tensorop import TensorOp, map_inputs


class Resize(TensorOp):
    """Resize images of shape (batch, height, width, channels) to ``size``.

    Args:
        inputs: Key(s) of image batches.
        size: (height, width) of the output.
        outputs: Key(s) to write, one per input.
        mode: "train", "eval" or None for both.
        resize_method: A ``tf.image.resize`` method ("bilinear", "nearest", "bicubic", "area", ...).
    """

    def __init__(self, inputs: str | Sequence[str], size: Sequence[int],
                 outputs: str | Sequence[str], mode: str | Iterable[str] | None = None,
                 resize_method: str = "bilinear") -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        size = tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ConfigError(f"Resize: size must be (height, width) of positive ints, got {size!r}.")
        self.size = size
        self.resize_method = resize_method

    def forward(self, data: tf.Tensor | list[tf.Tensor],
                state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        return map_inputs(lambda x: tf.image.resize(x, self.size, method=self.resize_method), data)
