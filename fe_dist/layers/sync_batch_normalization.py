"""`SyncBatchNormalization`: batch normalisation over the global batch of all ranks."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from fe_dist.distributed import get_context


class SyncBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training-mode statistics are the mean and
    variance over the **global** batch (every rank's share), not over this rank's share.

    With plain BatchNormalization each rank normalises by the statistics of its own few samples,
    so a model trained on N ranks differs from the same model trained on one process with the
    same global batch; with this layer the two agree (to float rounding). The cost is two
    small collectives per layer in the forward pass (sum and count; sum of squared deviations)
    and two in the backward pass. On one process it is plain BatchNormalization. Use it in
    place of ``keras.layers.BatchNormalization``; every argument is the same, except masks,
    which it does not support. Horovod's own ``SyncBatchNormalization`` is Keras-2 only.
    """

    def _moments(self, inputs: tf.Tensor, mask: Any) -> tuple[tf.Tensor, tf.Tensor]:
        if mask is not None:
            raise ValueError(f"{self.name}: SyncBatchNormalization does not support masks; "
                             "use keras.layers.BatchNormalization for masked inputs.")
        ctx = get_context()
        if ctx.backend == "local":  # by backend, not size: an elastic run may grow
            return super()._moments(inputs, mask)
        axes = self._reduction_axes
        name = f"fe.syncbn.{self.name}"
        local_sum = tf.reduce_sum(inputs, axis=axes, keepdims=True)
        count = tf.cast(tf.size(inputs), inputs.dtype) / tf.cast(tf.size(local_sum),
                                                                   inputs.dtype)
        # One collective for the sums and the sample count (shares may differ by one sample).
        packed = ctx.sum_over_ranks(
            tf.concat([tf.reshape(local_sum, [-1]), tf.reshape(count, [1])], axis=0), name)
        total = packed[-1]
        mean = tf.reshape(packed[:-1], tf.shape(local_sum)) / total
        # Two passes, as in one process: the variance of the deviations from the global mean.
        squares = tf.reduce_sum(tf.square(inputs - mean), axis=axes, keepdims=True)
        variance = ctx.sum_over_ranks(squares, f"{name}.var") / total
        return tf.squeeze(mean, axes), tf.squeeze(variance, axes)
