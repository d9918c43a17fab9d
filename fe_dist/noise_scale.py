"""The gradient noise scale of the trained models, measured from gradients the step already has.

McCandlish et al. (2018), "An Empirical Model of Large-Batch Training", appendix A: with
``|G_small|²`` the squared norm of a gradient averaged over ``b`` samples and ``|G_big|²`` that
of one averaged over ``B > b`` samples, both of the same weights,

    |G|²  ≈ (B |G_big|² − b |G_small|²) / (B − b)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/b − 1/B)

are unbiased estimates of the true gradient's squared norm and of the per-sample gradient
covariance's trace; the noise scale ``B_noise = tr(Σ) / |G|²`` is about the largest useful batch.
Data-parallel training has both gradients: each rank's share (or micro-batch) is a small-batch
gradient and the allreduced sum the big-batch one. fe_dist reduces the small gradients' squared
norms in the same collective as the gradients (one scalar more), so every rank computes the same
estimates from the same reduced values. One process without accumulation takes the gradients of
the two halves of its batch, the shards two ranks would hold, so one process and two ranks
measure the same numbers. As in the paper, both estimates are smoothed separately (an
exponential moving average over steps, bias-corrected) before their ratio is taken: a single
step's ``|G|²`` estimate is noisy and can be negative.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
    """The smoothed estimates after some steps.

    Attributes:
        grad_sq: ``|G|²``, the squared norm of the true gradient.
        trace: ``tr(Σ)``, the trace of the per-sample gradient covariance.
        steps: Optimizer steps measured so far in the run.
    """

    grad_sq: float
    trace: float
    steps: int

    @property
    def noise_scale(self) -> float | None:
        """``B_noise = tr(Σ) / |G|²``; None while ``|G|²`` is not positive (too few steps)."""
        if self.steps == 0 or not self.grad_sq > 0 or not math.isfinite(self.trace):
            return None
        return max(self.trace, 0.0) / self.grad_sq


def step_estimates(small_sq: tf.Tensor, big_sq: tf.Tensor, small_batch: tf.Tensor,
                   big_batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One step's unbiased (|G|², tr(Σ)) from the mean squared norm of the small-batch
    gradients (each averaged over ``small_batch`` samples) and that of the big-batch gradient."""
    grad_sq = (big_batch * big_sq - small_batch * small_sq) / (big_batch - small_batch)
    trace = (small_sq - big_sq) / (1.0 / small_batch - 1.0 / big_batch)
    return grad_sq, trace


class NoiseScale:
    """The running (smoothed) noise-scale estimates of a run, kept in variables the compiled
    train steps update, so measuring costs no host round trip.

    Args:
        smoothing: The moving average's decay per optimizer step (0.95: about the last 20
            steps count).
    """

    def __init__(self, smoothing: float = 0.95) -> None:
        self.smoothing = smoothing
        with tf.init_scope():  # made eagerly, so no step's first trace creates them
            self._grad_sq = tf.Variable(0.0, trainable=False, dtype=tf.float64)
            self._trace = tf.Variable(0.0, trainable=False, dtype=tf.float64)
            self._weight = tf.Variable(0.0, trainable=False, dtype=tf.float64)
            self._steps = tf.Variable(0, trainable=False, dtype=tf.int64)

    def update(self, small_sq_sum: tf.Tensor, small_count: tf.Tensor, big_sq: tf.Tensor,
               big_batch: tf.Tensor) -> None:
        """Add one optimizer step (inside the compiled step).

        Args:
            small_sq_sum: Sum over every rank's small gradients (shares or micro-batches) of
                their squared norms, each gradient scaled to a mean over its samples.
            small_count: How many small gradients that sum holds.
            big_sq: Squared norm of the summed (global-batch mean) gradient.
            big_batch: The global batch size.
        """
        small_sq_sum, small_count, big_sq, big_batch = (
            tf.cast(t, tf.float64) for t in (small_sq_sum, small_count, big_sq, big_batch))
        grad_sq, trace = step_estimates(small_sq_sum / small_count, big_sq,
                                        big_batch / small_count, big_batch)
        beta = tf.constant(self.smoothing, tf.float64)
        self._grad_sq.assign(beta * self._grad_sq + (1 - beta) * grad_sq)
        self._trace.assign(beta * self._trace + (1 - beta) * trace)
        self._weight.assign(beta * self._weight + (1 - beta))
        self._steps.assign_add(1)

    def read(self) -> NoiseEstimate:
        """The bias-corrected estimates so far."""
        weight = float(self._weight.numpy())
        if weight == 0.0:
            return NoiseEstimate(0.0, 0.0, 0)
        return NoiseEstimate(float(self._grad_sq.numpy()) / weight,
                             float(self._trace.numpy()) / weight, int(self._steps.numpy()))

    def get_state(self) -> list[float]:
        """The moving averages, for checkpoints and elastic snapshots."""
        return [float(self._grad_sq.numpy()), float(self._trace.numpy()),
                float(self._weight.numpy()), int(self._steps.numpy())]

    def set_state(self, state: list[float]) -> None:
        """Restore what `get_state` returned."""
        grad_sq, trace, weight, steps = state
        self._grad_sq.assign(grad_sq)
        self._trace.assign(trace)
        self._weight.assign(weight)
        self._steps.assign(int(steps))


def squared_norm(grads: list[tf.Tensor | None]) -> tf.Tensor:
    """Sum of squares of every gradient (None skipped), in float32. Sparse gradients
    (an Embedding's IndexedSlices) are made dense first: rows may repeat in their values."""
    terms = [tf.reduce_sum(tf.square(tf.cast(tf.convert_to_tensor(g), tf.float32)))
             for g in grads if g is not None]
    return tf.add_n(terms) if terms else tf.constant(0.0)
