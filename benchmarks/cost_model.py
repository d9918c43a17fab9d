"""A cost model for data-parallel training with ring allreduce, to project beyond this machine.

Per optimizer step, each of N workers computes on its own batch, then the gradients are summed
with a ring allreduce, which moves 2(N-1)/N of the gradient bytes through each link and takes
2(N-1) latency-bound rounds:

    t_comm(N) = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency
    efficiency(N) = t_compute / (t_compute + (1 - overlap) * t_comm(N))

with the per-worker batch held fixed (weak scaling: the global batch grows with N, as it must at
512 workers). This is a projection from measured inputs, not a measurement.
"""

from __future__ import annotations

NETWORKS = {  # name: (bandwidth in bytes/s, latency per message in s)
    "25 Gb/s Ethernet (TCP)": (25e9 / 8, 20e-6),
    "100 Gb/s InfiniBand (RDMA)": (100e9 / 8, 3e-6),
}
WORKERS = (8, 64, 512)


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


def project(compute_seconds: float, nbytes: float) -> dict[str, dict[int, float]]:
    """Efficiency at `WORKERS` on each of `NETWORKS`, no overlap of compute and communication."""
    return {net: {n: efficiency(compute_seconds, nbytes, n, bw, lat) for n in WORKERS}
            for net, (bw, lat) in NETWORKS.items()}
