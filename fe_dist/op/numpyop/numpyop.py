"""`NumpyOp`: a per-sample op of the Pipeline (FastEstimator's contract), and the base of the
built-in augmentations, which run vectorised over whole batches."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import tensorflow as tf

from fe_dist.errors import ConfigError
from fe_dist.op.numpyop.draws import Draws
from fe_dist.op.op import Op

DRAWS = "draws"  # the state entry holding the batch's `Draws` (set by the pipeline)


class NumpyOp(Op):
    """An op that transforms ONE sample as numpy arrays; runs in the Pipeline only.

    Subclass it and define ``forward(data, state)`` as in FastEstimator: ``data`` is the array
    of the input key (a list of arrays for several keys) of one sample, without the batch axis;
    return one array per output key. ``state["mode"]`` is the mode and ``state["rng"]`` a
    ``numpy.random.Generator`` seeded for this sample, op, epoch and Estimator seed (see
    `fe_dist.op.numpyop.draws`): use it for every random choice, and two runs (or one process
    and N ranks) draw the same numbers.

    fe_dist runs ``forward`` through ``tf.numpy_function`` on each sample of a batch, inside
    ``tf.data``. It learns the output dtypes and shapes by calling ``forward`` once, before
    training, on a zero-filled sample of the input's dtype and shape. The samples of a batch
    must give outputs of one shape (they are stacked).

    Args:
        inputs: Key(s) read.
        outputs: Key(s) written.
        mode: "train", "eval", a list of them, or None for every mode.
    """

    def __init__(self, inputs: str | Sequence[str] | None = None,
                 outputs: str | Sequence[str] | None = None,
                 mode: str | Iterable[str] | None = None) -> None:
        super().__init__(inputs=inputs, outputs=outputs, mode=mode)

    def forward(self, data: np.ndarray | list[np.ndarray],
                state: dict[str, Any]) -> np.ndarray | list[np.ndarray]:
        """Transform one sample (numpy arrays, no batch axis)."""
        raise NotImplementedError

    # -- what the pipeline calls -----------------------------------------------------------------
    def forward_batch(self, data: tf.Tensor | list[tf.Tensor],
                      state: dict[str, Any]) -> tf.Tensor | list[tf.Tensor]:
        """Apply the op to every sample of a batch (tensors with a batch axis).

        ``state[DRAWS]`` holds the batch's `Draws` for this op. The default runs ``forward``
        per sample through ``tf.numpy_function``; built-in ops override it with batched
        TensorFlow code.
        """
        xs = data if isinstance(data, list) else [data]
        out_specs = self._probe([tf.TensorSpec(x.shape[1:], x.dtype) for x in xs])
        mode, op, n_in = state["mode"], self, len(xs)

        def per_sample(*arrays: np.ndarray) -> list[np.ndarray]:
            seeds = arrays[n_in]
            results = []
            for i, seed in enumerate(seeds):
                sample = [a[i] for a in arrays[:n_in]]
                out = op.forward(sample[0] if n_in == 1 else sample,
                                 {"mode": mode, "rng": np.random.default_rng(int(seed))})
                results.append(out if len(op.outputs) > 1 else [out])
            return [np.stack([np.asarray(r[j], spec.dtype.as_numpy_dtype) for r in results])
                    for j, spec in enumerate(out_specs)]

        outs = tf.numpy_function(per_sample, [*xs, state[DRAWS].seeds()],
                                 [s.dtype for s in out_specs], stateful=False)
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]  # eager: one tensor
        for out, spec in zip(outs, out_specs):
            out.set_shape([xs[0].shape[0], *spec.shape])
        return outs if len(outs) > 1 else outs[0]

    def check_spec(self, specs: list[tf.TensorSpec]) -> str | None:
        """What is wrong with the input batches described by ``specs`` (one per input key,
        batch axis included), or None. Called before training on each signature epoch."""
        return None

    def check_data(self, key: str, values: np.ndarray) -> str | None:
        """What is wrong with all ``values`` of input ``key`` as stored in the data (read
        before training when cheap, e.g. labels), or None."""
        return None

    def _probe(self, specs: list[tf.TensorSpec]) -> list[tf.TensorSpec]:
        """Output specs (without batch axis) from one call of ``forward`` on zeros."""
        zeros = [np.zeros([1 if d is None else d for d in s.shape.as_list()],
                          s.dtype.as_numpy_dtype) for s in specs]
        try:
            out = self.forward(zeros[0] if len(zeros) == 1 else zeros,
                               {"mode": "train", "rng": np.random.default_rng(0)})
        except Exception as err:
            raise ConfigError(
                f"{self}: forward failed on a zero-filled sample "
                f"{[(z.dtype.name, z.shape) for z in zeros]}: {type(err).__name__}: {err}. "
                "fe_dist calls forward once on such a sample to learn its output dtypes and "
                "shapes; make forward accept it.") from err
        outs = list(out) if len(self.outputs) > 1 else [out]
        if len(outs) != len(self.outputs):
            raise ConfigError(f"{self}: forward returned {len(outs)} values for "
                              f"{len(self.outputs)} output keys {self.outputs}.")
        unknown = any(None in s.shape.as_list() for s in specs)
        result = []
        for o in outs:
            o = np.asarray(o)
            # With unknown input dims the probe's shape is one of many: keep only the rank.
            shape = [None] * o.ndim if unknown else list(o.shape)
            result.append(tf.TensorSpec(shape, tf.as_dtype(o.dtype)))
        return result


class BatchOp(NumpyOp):
    """A built-in NumpyOp written for whole batches (`forward_batch`); its per-sample
    ``forward`` runs that on a batch of one, so it also works as a plain FastEstimator op."""

    def forward(self, data: np.ndarray | list[np.ndarray],
                state: dict[str, Any]) -> np.ndarray | list[np.ndarray]:
        rng = state.get("rng") or np.random.default_rng()
        xs = data if isinstance(data, list) else [data]
        draws = Draws(tf.constant(int(rng.integers(2**32)), tf.uint32),
                      tf.zeros([1], tf.int64))
        out = self.forward_batch([tf.convert_to_tensor(x)[None] for x in xs]
                                 if isinstance(data, list) else tf.convert_to_tensor(data)[None],
                                 {"mode": state.get("mode", "train"), DRAWS: draws})
        return [o[0].numpy() for o in out] if isinstance(out, list) else out[0].numpy()


def per_input(fn: Any, data: tf.Tensor | list[tf.Tensor]) -> tf.Tensor | list[tf.Tensor]:
    """``fn`` applied to the one input batch, or to each of several (same draws for each)."""
    return [fn(x) for x in data] if isinstance(data, list) else fn(data)


ANY_DTYPES = (tf.bool, tf.uint8, tf.uint16, tf.int8, tf.int16, tf.int32, tf.int64, tf.float16,
              tf.bfloat16, tf.float32, tf.float64)  # what moving pixels around handles
IMAGE_DTYPES = (tf.uint8, tf.uint16, tf.int32, tf.int64, tf.float16, tf.float32, tf.float64)


def image_problem(op: Op, specs: list[tf.TensorSpec],
                  dtypes: Sequence[tf.DType] = IMAGE_DTYPES) -> str | None:
    """Why ``specs`` are not batches of HWC images of ``dtypes`` for ``op``, or None."""
    for key, spec in zip(op.inputs, specs):
        shape = spec.shape
        per_sample = tuple(shape.as_list()[1:]) if shape.rank is not None else None
        if shape.rank != 4:
            return (f"key {key!r} has per-sample shape {per_sample} ({spec.dtype.name}), but "
                    f"{type(op).__name__} needs images of shape (height, width, channels). "
                    "Apply it to an image key; give a grey image a channel axis "
                    "(x[..., None]).")
        if spec.dtype not in dtypes:
            return (f"key {key!r} has dtype {spec.dtype.name}; {type(op).__name__} handles "
                    f"{', '.join(d.name for d in dtypes)}. Cast it first (e.g. a Scale or "
                    "Minmax op before this one, or the data as uint8/float32).")
    return None
