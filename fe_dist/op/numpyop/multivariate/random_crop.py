"""`RandomCrop`: a random window of each image."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import ANY_DTYPES, DRAWS, BatchOp, image_problem


class RandomCrop(BatchOp):
    """Crop a ``height`` x ``width`` window at a random place of each image.

    This is a crop of a larger image (FastEstimator's and albumentations' ``RandomCrop``):
    the image must be at least ``height`` x ``width``. For CIFAR-style pad-and-crop, pad
    first: ``PadIfNeeded(x, x, min_height=40, min_width=40)`` then ``RandomCrop(x, x, 32, 32)``.
    Each sample gets its own offset; several input keys (an image and its mask) are cropped at
    the same place.

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        height: Height of the window.
        width: Width of the window.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 height: int, width: int, mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"RandomCrop: {name} must be a positive int, got {value!r}.")
        self.height, self.width = height, width

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        xs = data if isinstance(data, list) else [data]
        shape = tf.shape(xs[0], out_type=tf.int32)
        offsets = state[DRAWS].integers(2, 0, tf.stack([shape[1] - self.height,
                                                        shape[2] - self.width]))
        rows = offsets[:, :1] + tf.range(self.height)[None]  # [batch, height]
        cols = offsets[:, 1:] + tf.range(self.width)[None]  # [batch, width]
        outs = [tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
                for x in xs]
        return outs if isinstance(data, list) else outs[0]

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        problem = image_problem(self, specs, dtypes=ANY_DTYPES)
        if problem:
            return problem
        for key, spec in zip(self.inputs, specs):
            h, w = spec.shape.as_list()[1:3]
            if (h is not None and h < self.height) or (w is not None and w < self.width):
                return (f"key {key!r} holds images of {h}x{w} (per-sample shape "
                        f"{tuple(spec.shape.as_list()[1:])}), smaller than the crop "
                        f"{self.height}x{self.width}. Crop at most {h}x{w}, or pad the "
                        "images first: PadIfNeeded(inputs, outputs, "
                        f"min_height={self.height}, min_width={self.width}) before this op "
                        "(or a Resize up).")
        return None

