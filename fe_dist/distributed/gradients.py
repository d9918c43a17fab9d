"""How gradients are summed over ranks: a compression policy and a collective pattern, above the
Context's collectives (as Horovod's ``Compression`` objects sit above its allreduce).

A `GradientReducer` is what a compiled train step calls; the Context underneath only moves
tensors. The policies are applied on one rank too, so a program gives the same numbers on any
number of ranks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from fe_dist.distributed.context import Context

# A trace-time helper without tensor-dependent Python control flow: AutoGraph's conversion
# of it changed nothing and cost time at every start-up (benchmarks/first_step.py).
_static_helper = tf.autograph.experimental.do_not_convert


class Compression:
    """No compression: gradients are summed in their own dtype."""

    name: str | None = None

    @_static_helper
    def compress(self, tensor: tf.Tensor) -> tf.Tensor:
        """The tensor to send."""
        return tensor

    @_static_helper
    def decompress(self, tensor: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        """The received sum, back in the gradient's ``dtype``."""
        return tensor


class FP16Compression(Compression):
    """float32 gradients are sent and summed as float16 (half the bytes, Horovod's
    ``Compression.fp16``); the sum is cast back to float32."""

    name = "fp16"

    @_static_helper
    def compress(self, tensor: tf.Tensor) -> tf.Tensor:
        return tf.cast(tensor, tf.float16) if tensor.dtype == tf.float32 else tensor

    @_static_helper
    def decompress(self, tensor: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
        return tf.cast(tensor, dtype) if tensor.dtype != dtype else tensor


COMPRESSIONS: dict[str | None, Compression] = {None: Compression(), "fp16": FP16Compression()}
"""The gradient compressions by name: None (none) and "fp16" (allreduced as float16)."""
ALLREDUCE_MODES = ("grouped", "per_tensor")
"""The `Network(allreduce=...)` modes: "grouped" (one collective for all of a model's gradients)
or "per_tensor" (one collective per gradient)."""


class TrafficCounters:
    """Gradient tensors and bytes handed to the collectives so far. Variables updated in the
    graph count every executed step, not just traced ones; made eagerly once, so no step's
    first trace creates a variable."""

    def __init__(self) -> None:
        with tf.init_scope():
            self.tensors = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.bytes = tf.Variable(0, dtype=tf.int64, trainable=False)

    @_static_helper
    def add(self, tensors: Sequence[tf.Tensor]) -> None:
        """Count ``tensors`` (inside a step: a graph update)."""
        self.tensors.assign_add(len(tensors))
        self.bytes.assign_add(sum(int(np.prod(t.shape.as_list())) * t.dtype.size
                                  for t in tensors))

    def read(self) -> tuple[int, int]:
        """(tensors, bytes) so far."""
        return int(self.tensors.numpy()), int(self.bytes.numpy())


class GradientReducer:
    """Sums a model's gradients over ranks.

    Args:
        compression: A `Compression`.
        mode: "grouped": one collective for all of a model's gradients, which starts when the
            last gradient is ready. "per_tensor": one collective per gradient (named
            ``name.i``), each free to start as soon as the backward pass produces its input, so
            communication overlaps the rest of the backward pass where the backend's
            collectives are asynchronous (Horovod; its cycle fuses those ready together).
        counters: Where to count what is sent.
    """

    def __init__(self, compression: Compression, mode: str, counters: TrafficCounters) -> None:
        self.compression, self.mode, self.counters = compression, mode, counters

    @_static_helper
    def __call__(self, ctx: Context, grads: Sequence[tf.Tensor], name: str,
                 extras: Sequence[tf.Tensor] = ()) -> list[tf.Tensor]:
        """The sums over ranks of ``grads`` (no None: leave variables without a gradient out).

        Args:
            ctx: The ranks.
            grads: This rank's gradients.
            name: Collective name; the same on every rank and unique per model (ranks match
                collectives by name, not by order).
            extras: A few float32 scalars to sum in the same collective, uncompressed (the
                gradient noise scale's squared norms); their sums follow the gradients' in the
                result.
        """
        if not grads and not extras:
            return []
        dtypes = [tf.convert_to_tensor(g).dtype for g in grads]
        sent = [self.compression.compress(tf.convert_to_tensor(g)) for g in grads]
        self.counters.add(sent)
        extras = list(extras)
        # The extras ride in the gradients' collective when it is one of float32 tensors; in
        # their own (one more small collective) when the gradients go one by one or in another
        # dtype (a grouped collective of mixed dtypes is not fused by every backend).
        alone = self.mode == "per_tensor" or any(t.dtype != tf.float32 for t in sent)
        if self.mode == "per_tensor":
            summed = [ctx.allreduce_sum([t], f"{name}.{i}")[0] for i, t in enumerate(sent)]
        elif sent:
            summed = ctx.allreduce_sum([*sent, *([] if alone else extras)], name)
        else:
            summed, alone = [], True
        if extras and alone:
            summed = [*summed[:len(sent)], *ctx.allreduce_sum(extras, f"{name}.extras")]
        return ([self.compression.decompress(t, d) for t, d in zip(summed, dtypes)]
                + list(summed[len(sent):]))
