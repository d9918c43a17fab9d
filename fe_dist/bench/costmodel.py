"""A cost model of data-parallel steps with a ring allreduce, fitted on the run's own network.

Per optimizer step each of N workers computes on its batch, then the gradients are summed by a
ring allreduce, which moves 2(N-1)/N of the bytes through each link in 2(N-1) rounds:

    t_comm(N, bytes) = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency
    t_step(N) = t_compute(per-rank batch) + t_comm(N, gradient bytes)      (no overlap)

`fit` finds bandwidth and latency by least squares from allreduce times the run measured (the
probe of plain buffers and the gradients' own allreduce, at every size the run had). With one
world size only the sizes separate the two terms; with several, the rank counts do too. A
projection to sizes the run did not measure is a projection, and is labelled so everywhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PROJECT_TO = (8, 16, 64, 512)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Fitted terms.

    Attributes:
        bandwidth: Bytes/s through each link.
        latency: Seconds per round (the stack's per-message cost; 0 when below what the fit
            resolves).
        points: How many measurements the fit used.
    """

    bandwidth: float
    latency: float
    points: int

    def allreduce_seconds(self, nbytes: float, workers: int) -> float:
        """Seconds of one ring allreduce of ``nbytes`` over ``workers``."""
        return ring_allreduce_seconds(nbytes, workers, self.bandwidth, self.latency)


def ring_allreduce_seconds(nbytes: float, workers: int, bandwidth: float, latency: float) -> float:
    """Seconds of one ring allreduce of ``nbytes`` over ``workers``."""
    if workers <= 1:
        return 0.0
    return 2 * (workers - 1) / workers * nbytes / bandwidth + 2 * (workers - 1) * latency


def efficiency(compute_seconds: float, nbytes: float, workers: int, bandwidth: float,
               latency: float, overlap: float = 0.0) -> float:
    """Projected scaling efficiency (1.0 = linear) of one step."""
    comm = ring_allreduce_seconds(nbytes, workers, bandwidth, latency)
    return compute_seconds / (compute_seconds + (1.0 - overlap) * comm)


def fit(points: list[tuple[int, float, float]]) -> CostModel | None:
    """The model fitted to (workers, bytes, seconds) measurements (workers > 1); None when
    they cannot determine a bandwidth (fewer than two distinct sizes)."""
    points = [p for p in points if p[0] > 1 and p[2] > 0]
    if len({(n, b) for n, b, _ in points}) < 2:
        return None
    a = np.array([[2 * (n - 1) / n * b, 2 * (n - 1)] for n, b, _ in points])
    t = np.array([s for _, _, s in points])
    # Relative errors: a 64 KB allreduce counts as much as a 100 MB one.
    w = 1.0 / t
    (inv_bw, lat), *_ = np.linalg.lstsq(a * w[:, None], t * w, rcond=None)
    if lat < 0:  # latency below resolution: refit the bandwidth alone
        inv_bw = float(np.linalg.lstsq(a[:, :1] * w[:, None], t * w, rcond=None)[0][0])
        lat = 0.0
    if inv_bw <= 0:
        return None
    return CostModel(bandwidth=1.0 / inv_bw, latency=float(lat), points=len(points))
