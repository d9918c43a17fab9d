"""`VerticalFlip`: mirror images top to bottom."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import tensorflow as tf

from fe_dist.op.numpyop.numpyop import ANY_DTYPES, BatchOp, image_problem, per_input


class VerticalFlip(BatchOp):
    """Mirror every image top to bottom (the height axis of HWC images).

    As in FastEstimator the op always flips; ``Sometimes(VerticalFlip(...), 0.5)`` flips a
    random half of the samples (a per-sample draw). Several input keys (an image and its mask)
    are flipped together.

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        return per_input(lambda x: tf.reverse(x, axis=[1]), data)

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        return image_problem(self, specs, dtypes=ANY_DTYPES)

