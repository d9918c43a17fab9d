"""`PadIfNeeded`: pad images up to a minimum size (before a `RandomCrop`, CIFAR-style)."""

from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.numpyop import ANY_DTYPES, BatchOp, image_problem

# FastEstimator passes OpenCV's border constants; their numpy.pad names. Note that OpenCV's
# BORDER_REFLECT (2) repeats the edge pixel (numpy's "symmetric") and BORDER_REFLECT_101 (4,
# albumentations' and FastEstimator's default) does not (numpy's "reflect").
_CV2_MODES = {0: "constant", 1: "edge", 2: "symmetric", 3: "wrap", 4: "reflect"}
_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


class PadIfNeeded(BatchOp):
    """Pad each image to at least ``min_height`` x ``min_width``, keeping it centred.

    As albumentations' and FastEstimator's ``PadIfNeeded``: a side already at least as large
    is left as it is (an image larger than the minimum passes through unchanged), and the
    padding of a side is split evenly, the odd pixel going to the bottom / right (a 31-pixel
    side padded to 40 gets 4 rows on top and 5 below). The op is deterministic (it draws no
    random numbers); put a `RandomCrop` after it for the usual pad-and-crop augmentation.
    Several input keys (an image and its mask) are padded alike.

    Args:
        inputs: Image key(s), per-sample shape (height, width, channels).
        outputs: Key(s) to write, one per input.
        min_height: Minimum height of the output.
        min_width: Minimum width of the output.
        border_mode: How the border is filled, as ``numpy.pad`` modes: "constant"
            (``value``), "reflect" (mirror without repeating the edge pixel: cb|abc|ba;
            the default, OpenCV's BORDER_REFLECT_101 as in FastEstimator), "symmetric"
            (mirror repeating the edge pixel: ba|abc|cb), "edge" (repeat the edge pixel) or
            "wrap". OpenCV's constants 0-4 (``cv2.BORDER_CONSTANT`` ...
            ``cv2.BORDER_REFLECT_101``), as FastEstimator takes them, are accepted too. Any
            amount of padding works, as in ``numpy.pad``.
        value: The fill of ``border_mode="constant"``: a number, or one per channel; None is 0.
            It must fit the images' dtype (e.g. an integer in [0, 255] for uint8).
        mode: "train", "eval", "test", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str], outputs: str | Sequence[str],
                 min_height: int = 1024, min_width: int = 1024,
                 border_mode: str | int = "reflect",
                 value: float | Sequence[float] | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)
        for name, size in (("min_height", min_height), ("min_width", min_width)):
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ConfigError(f"PadIfNeeded: {name} must be a positive int, got {size!r}.")
        if len(self.inputs) != len(self.outputs):
            raise ConfigError(f"PadIfNeeded: {len(self.inputs)} input keys {self.inputs} but "
                              f"{len(self.outputs)} output keys {self.outputs}; give one output "
                              "per input.")
        self.min_height, self.min_width = min_height, min_width
        self.border_mode = _border_mode(border_mode)
        self.value = _fill(value)

    def get_config(self) -> dict[str, Any]:
        # border_mode=4 and "reflect" do the same: one signature, so one cached dataset.
        return {"border_mode": self.border_mode, "value": self.value}

    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        xs = data if isinstance(data, list) else [data]
        outs = [self._pad(x) for x in xs]
        return outs if isinstance(data, list) else outs[0]

    def _pad(self, x: tf.Tensor) -> tf.Tensor:
        # One gather per padded axis with an index map (numpy.pad's rule for the mode), so
        # every mode handles any amount of padding; a constant border is then filled in.
        # A side known (statically) to be large enough is not touched at all.
        valid = None
        for axis, least in ((1, self.min_height), (2, self.min_width)):
            static = x.shape[axis]
            if static is not None and static >= least:
                continue
            size = tf.shape(x, out_type=tf.int32)[axis]
            index, inside = _index_map(size, least, self.border_mode)
            x = tf.gather(x, index, axis=axis)
            if self.border_mode == "constant":
                shape = [1, -1, 1, 1] if axis == 1 else [1, 1, -1, 1]
                inside = tf.reshape(inside, shape)
                valid = inside if valid is None else tf.logical_and(valid, inside)
        if valid is None:
            return x
        fill = tf.cast(tf.constant(self.value, tf.float64), x.dtype)
        return tf.where(valid, x, fill)  # a per-channel fill broadcasts over the last axis

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        problem = image_problem(self, specs, dtypes=ANY_DTYPES)
        if problem or self.border_mode != "constant":
            return problem
        for key, spec in zip(self.inputs, specs):
            channels = spec.shape[3]
            values = list(self.value) if isinstance(self.value, tuple) else [self.value]
            if len(values) > 1 and channels is not None and len(values) != channels:
                return (f"value {self.value!r} gives {len(values)} channel fills but key "
                        f"{key!r} has {channels} channels. Give one number, or one per channel.")
            problem = _fit_problem(values, spec.dtype)
            if problem:
                return (f"the fill value {self.value!r} {problem} of key {key!r}; give a value "
                        "that fits, or cast the images first.")
        return None


def _border_mode(border_mode: str | int) -> str:
    if isinstance(border_mode, int) and not isinstance(border_mode, bool) \
            and border_mode in _CV2_MODES:
        return _CV2_MODES[border_mode]
    if isinstance(border_mode, str) and border_mode in _MODES:
        return border_mode
    raise ConfigError(f"PadIfNeeded: border_mode must be one of {_MODES} or an OpenCV border "
                      f"constant 0-4 ({', '.join(f'{k}: {v!r}' for k, v in _CV2_MODES.items())})"
                      f", got {border_mode!r}.")


def _fill(value: Any) -> float | tuple[float, ...]:
    """``value`` as a float, or a tuple of floats (one per channel)."""
    if value is None:
        return 0.0
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not items or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                            for v in items):
        raise ConfigError(f"PadIfNeeded: value must be a number or one number per channel, "
                          f"got {value!r}.")
    fills = tuple(float(v) for v in items)
    return fills if isinstance(value, (list, tuple, np.ndarray)) else fills[0]


def _fit_problem(values: list[float], dtype: tf.DType) -> str | None:
    """Why ``values`` do not fit ``dtype`` exactly, or None."""
    if dtype == tf.bool:
        return None if all(v in (0.0, 1.0) for v in values) else "is not 0 or 1 for the bool"
    if dtype.is_integer:
        if not all(v.is_integer() and dtype.min <= v <= dtype.max for v in values):
            return f"is not an integer in [{dtype.min}, {dtype.max}] for the {dtype.name} images"
    return None


def _index_map(size: tf.Tensor, least: int, border_mode: str) -> tuple[tf.Tensor, tf.Tensor]:
    """For an axis of ``size`` padded to ``max(size, least)``: which input index each output
    position reads (numpy.pad's rule for ``border_mode``), and whether it is inside the image."""
    total = tf.maximum(least - size, 0)
    before = total // 2  # albumentations: the odd pixel goes after (bottom / right)
    at = tf.range(size + total) - before  # position relative to the image's first pixel
    inside = tf.logical_and(at >= 0, at < size)
    if border_mode in ("constant", "edge"):
        index = tf.clip_by_value(at, 0, size - 1)
    elif border_mode == "wrap":
        index = tf.math.floormod(at, size)
    elif border_mode == "symmetric":  # period 2n: ... c b a | a b c | c b a ...
        folded = tf.math.floormod(at, 2 * size)
        index = tf.where(folded < size, folded, 2 * size - 1 - folded)
    else:  # reflect, period 2(n - 1): ... c b | a b c | b a ...; one pixel repeats itself
        period = tf.maximum(2 * (size - 1), 1)
        folded = tf.math.floormod(at, period)
        index = tf.where(folded < size, folded, period - folded)
    return index, inside
