"""`Cutout`: fill one random square of each image."""

from __future__ import annotations

from typing import Iterable, Sequence

from fe_dist.op.numpyop.univariate.coarse_dropout import CoarseDropout


class Cutout(CoarseDropout):
    """Fill one ``size`` x ``size`` square at a random place of each image with
    ``fill_value`` (DeVries & Taylor's Cutout; a `CoarseDropout` with one hole).

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        size: Side of the square, pixels.
        fill_value: The value written into the square.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 size: int = 8, fill_value: float = 0,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, max_holes=1, max_height=size,
                         max_width=size, fill_value=fill_value, mode=mode)
