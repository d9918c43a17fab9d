"""FastEstimator 1.x's ``fe.op.numpyop.multivariate``: fe_dist's geometric ops under
FastEstimator's argument names (``image_in=``, ``mask_in=``, ``image_out=``, ``mask_out=``).

An image and its mask move together (the same draw for both). Keypoints and bounding boxes
are not supported.
"""

from __future__ import annotations

from typing import Any, Iterable

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.multivariate import horizontal_flip, pad_if_needed, random_crop, rotate
from fe_dist.op.numpyop.multivariate import vertical_flip


def _keys(name: str, image_in: str | None, mask_in: str | None, image_out: str | None,
          mask_out: str | None, extra: dict[str, Any]) -> tuple[list[str], list[str]]:
    unsupported = sorted(k for k, v in extra.items() if v is not None)
    if unsupported:
        raise ConfigError(f"{name}: {unsupported} are not supported by fe_dist (images and "
                          "masks only).")
    inputs = [k for k in (image_in, mask_in) if k is not None]
    outputs = [k for k in (image_out, mask_out) if k is not None]
    if not inputs or len(inputs) != len(outputs):
        raise ConfigError(f"{name}: give image_in (and mask_in) with as many outputs "
                          f"(image_out, mask_out); got inputs {inputs}, outputs {outputs}.")
    return inputs, outputs


class HorizontalFlip(horizontal_flip.HorizontalFlip):
    """Flip left-right with probability 0.5 (FastEstimator's argument names)."""

    def __init__(self, image_in: str | None = None, mask_in: str | None = None,
                 keypoints_in: str | None = None, bbox_in: str | None = None,
                 image_out: str | None = None, mask_out: str | None = None,
                 keypoints_out: str | None = None, bbox_out: str | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        inputs, outputs = _keys("HorizontalFlip", image_in, mask_in, image_out, mask_out,
                                {"keypoints_in": keypoints_in, "bbox_in": bbox_in})
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)


class VerticalFlip(vertical_flip.VerticalFlip):
    """Flip up-down with probability 0.5 (FastEstimator's argument names)."""

    def __init__(self, image_in: str | None = None, mask_in: str | None = None,
                 keypoints_in: str | None = None, bbox_in: str | None = None,
                 image_out: str | None = None, mask_out: str | None = None,
                 keypoints_out: str | None = None, bbox_out: str | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        inputs, outputs = _keys("VerticalFlip", image_in, mask_in, image_out, mask_out,
                                {"keypoints_in": keypoints_in, "bbox_in": bbox_in})
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)


class Rotate(rotate.Rotate):
    """Rotate by an angle drawn from (-limit, limit) degrees (FastEstimator's argument
    names)."""

    def __init__(self, image_in: str | None = None, mask_in: str | None = None,
                 keypoints_in: str | None = None, bbox_in: str | None = None,
                 image_out: str | None = None, mask_out: str | None = None,
                 keypoints_out: str | None = None, bbox_out: str | None = None,
                 mode: str | Iterable[str] | None = None, limit: float = 90,
                 fill_value: float = 0.0) -> None:
        inputs, outputs = _keys("Rotate", image_in, mask_in, image_out, mask_out,
                                {"keypoints_in": keypoints_in, "bbox_in": bbox_in})
        super().__init__(inputs=inputs, outputs=outputs, limit=limit, fill_value=fill_value,
                         mode=mode)


class PadIfNeeded(pad_if_needed.PadIfNeeded):
    """Pad to at least ``min_height`` x ``min_width`` (FastEstimator's argument names)."""

    def __init__(self, image_in: str | None = None, mask_in: str | None = None,
                 keypoints_in: str | None = None, bbox_in: str | None = None,
                 image_out: str | None = None, mask_out: str | None = None,
                 keypoints_out: str | None = None, bbox_out: str | None = None,
                 mode: str | Iterable[str] | None = None, min_height: int = 1024,
                 min_width: int = 1024, border_mode: str | int = "reflect",
                 value: float | None = None) -> None:
        inputs, outputs = _keys("PadIfNeeded", image_in, mask_in, image_out, mask_out,
                                {"keypoints_in": keypoints_in, "bbox_in": bbox_in})
        super().__init__(inputs=inputs, outputs=outputs, min_height=min_height,
                         min_width=min_width, border_mode=border_mode, value=value, mode=mode)


class RandomCrop(random_crop.RandomCrop):
    """A random ``height`` x ``width`` window (FastEstimator's argument order and names)."""

    def __init__(self, height: int, width: int, image_in: str | None = None,
                 mask_in: str | None = None, keypoints_in: str | None = None,
                 bbox_in: str | None = None, image_out: str | None = None,
                 mask_out: str | None = None, keypoints_out: str | None = None,
                 bbox_out: str | None = None, mode: str | Iterable[str] | None = None) -> None:
        inputs, outputs = _keys("RandomCrop", image_in, mask_in, image_out, mask_out,
                                {"keypoints_in": keypoints_in, "bbox_in": bbox_in})
        super().__init__(inputs=inputs, outputs=outputs, height=height, width=width, mode=mode)


__all__ = ["HorizontalFlip", "PadIfNeeded", "RandomCrop", "Rotate", "VerticalFlip"]
