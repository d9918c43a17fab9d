"""`Rotate`: rotate images by a random angle."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import DRAWS, BatchOp, image_problem

_DTYPES = (tf.uint8, tf.uint16, tf.int8, tf.int16, tf.int32, tf.int64, tf.float16, tf.bfloat16,
           tf.float32, tf.float64)
_FILL_MODES = ("constant", "reflect", "wrap", "nearest")


class Rotate(BatchOp):
    """Rotate each image about its centre by an angle drawn uniformly from ``limit``.

    Positive angles turn counter-clockwise (as ``np.rot90``). All samples rotate in one batched
    projective transform, each by its own angle; several input keys (an image and its mask)
    turn by the same angle.

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        limit: Degrees: an angle is drawn from (-limit, limit), or from (low, high) for a pair.
        interpolation: "bilinear" or "nearest" (use "nearest" for masks of class ids).
        fill_mode: How points outside the image are filled: "constant" (``fill_value``),
            "reflect", "wrap" or "nearest".
        fill_value: The value outside the image for ``fill_mode="constant"``.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 limit: float | tuple[float, float] = 90, interpolation: str = "bilinear",
                 fill_mode: str = "constant", fill_value: float = 0.0,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        low, high = (-limit, limit) if isinstance(limit, (int, float)) else tuple(limit)
        if not low <= high:
            raise ConfigError(f"Rotate: limit must be degrees or a pair (low, high) with "
                              f"low <= high, got {limit!r}.")
        if interpolation not in ("bilinear", "nearest"):
            raise ConfigError(f"Rotate: interpolation must be 'bilinear' or 'nearest', got "
                              f"{interpolation!r}.")
        if fill_mode not in _FILL_MODES:
            raise ConfigError(f"Rotate: fill_mode must be one of {_FILL_MODES}, got "
                              f"{fill_mode!r}.")
        self.low, self.high = float(low), float(high)
        self.interpolation, self.fill_mode = interpolation, fill_mode
        self.fill_value = float(fill_value)

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        xs = data if isinstance(data, list) else [data]
        shape = tf.shape(xs[0])
        h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        degrees = self.low + state[DRAWS].uniform(1)[:, 0] * (self.high - self.low)
        # Output pixel (x, y) reads the input at the point rotated back about the centre; on a
        # square image a quarter turn maps pixel centres onto pixel centres exactly.
        angle = degrees * (math.pi / 180.0)
        cos, sin = tf.cos(angle), tf.sin(angle)
        x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
        y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
        zeros = tf.zeros_like(cos)
        transforms = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, zeros, zeros], axis=1)
        outs = [self._transform(x, transforms, shape[1:3]) for x in xs]
        return outs if isinstance(data, list) else outs[0]

    def _transform(self, x: tf.Tensor, transforms: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        # Integer images are interpolated in float32 and rounded back: the kernel itself
        # truncates, so a quarter turn of uint8 would lose 1 where the weights are 1 - 1e-17.
        work = x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)
        out = tf.raw_ops.ImageProjectiveTransformV3(
            images=work, transforms=transforms, output_shape=size,
            fill_value=tf.constant(self.fill_value, tf.float32),
            interpolation=self.interpolation.upper(), fill_mode=self.fill_mode.upper())
        if x.dtype.is_integer:
            return tf.saturate_cast(tf.round(out), x.dtype)
        return tf.cast(out, x.dtype)

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        return image_problem(self, specs, dtypes=_DTYPES)
