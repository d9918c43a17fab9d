"""`CoarseDropout`: fill random rectangles of each image."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import DRAWS, IMAGE_DTYPES, BatchOp, image_problem


class CoarseDropout(BatchOp):
    """Fill between ``min_holes`` and ``max_holes`` rectangles of each image with
    ``fill_value`` (Cutout for one hole), as FastEstimator's (albumentations') CoarseDropout.

    Each sample draws its own number of holes, their sizes (``min_height..max_height`` by
    ``min_width..max_width`` pixels) and places; a hole lies inside the image. Holes are drawn
    for all samples at once as masks, with no per-sample loop.

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        max_holes: Most holes per image.
        max_height: Largest hole height, pixels.
        max_width: Largest hole width, pixels.
        min_holes: Fewest holes (default ``max_holes``).
        min_height: Smallest hole height (default ``max_height``).
        min_width: Smallest hole width (default ``max_width``).
        fill_value: The value written into the holes.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 max_holes: int = 8, max_height: int = 8, max_width: int = 8,
                 min_holes: int | None = None, min_height: int | None = None,
                 min_width: int | None = None, fill_value: float = 0,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        name = type(self).__name__
        pairs = {"holes": (min_holes, max_holes), "height": (min_height, max_height),
                 "width": (min_width, max_width)}
        for what, (low, high) in pairs.items():
            low = high if low is None else low
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) \
                    or not 1 <= low <= high:
                raise ConfigError(f"{name}: need 1 <= min_{what} <= max_{what} (ints), got "
                                  f"min_{what}={low!r}, max_{what}={high!r}.")
            pairs[what] = (low, high)
        self.holes, self.heights, self.widths = pairs["holes"], pairs["height"], pairs["width"]
        self.fill_value = fill_value

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        xs = data if isinstance(data, list) else [data]
        shape = tf.shape(xs[0], out_type=tf.int32)
        h_img, w_img = shape[1], shape[2]
        k = self.holes[1]
        # One draw of 1 + 4k numbers per sample: count, then k heights, widths, tops, lefts.
        u = state[DRAWS].uniform(1 + 4 * k)

        def scaled(part: tf.Tensor, low: tf.Tensor | int, high: tf.Tensor | int) -> tf.Tensor:
            span = tf.cast(high, tf.float32) - tf.cast(low, tf.float32) + 1.0
            return tf.cast(tf.floor(tf.cast(low, tf.float32) + part * span), tf.int32)

        count = scaled(u[:, :1], *self.holes)  # [batch, 1]
        heights = scaled(u[:, 1:1 + k], *self.heights)  # [batch, k]
        widths = scaled(u[:, 1 + k:1 + 2 * k], *self.widths)
        tops = scaled(u[:, 1 + 2 * k:1 + 3 * k], 0, h_img - heights)
        lefts = scaled(u[:, 1 + 3 * k:], 0, w_img - widths)
        active = tf.range(k)[None] < count  # [batch, k]
        rows = tf.range(h_img)[None, None]  # [1, 1, H]
        cols = tf.range(w_img)[None, None]
        in_rows = (rows >= tops[..., None]) & (rows < (tops + heights)[..., None])  # [b, k, H]
        in_cols = (cols >= lefts[..., None]) & (cols < (lefts + widths)[..., None])  # [b, k, W]
        in_rows &= active[..., None]
        # A pixel is dropped when some active hole covers both its row and its column.
        hole = tf.reduce_any(in_rows[:, :, :, None] & in_cols[:, :, None, :], axis=1)
        outs = [tf.where(hole[..., None], tf.cast(self.fill_value, x.dtype), x) for x in xs]
        return outs if isinstance(data, list) else outs[0]

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        problem = image_problem(self, specs, dtypes=IMAGE_DTYPES)
        if problem:
            return problem
        for key, spec in zip(self.inputs, specs):
            h, w = spec.shape.as_list()[1:3]
            if (h is not None and h < self.heights[1]) or (w is not None and w < self.widths[1]):
                return (f"key {key!r} holds images of {h}x{w}, smaller than the largest hole "
                        f"{self.heights[1]}x{self.widths[1]}. Use smaller holes.")
        return None
