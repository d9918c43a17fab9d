"""One rank of a benchmark job: ``fe-bench worker ...`` (``python -m fe_dist.bench worker``).

``fe-bench`` launches it on every rank; a job launched by any other launcher (``srun``, a
batch system's ``mpirun``) runs the same command on each rank, and ``fe-bench report`` reads
the job's output. Rank 0 prints every rank's `RankResult` (see `fe_dist.bench.results`).

Variants: ``fe_dist`` (the workload as an fe_dist program, both schedules in turn),
``reference`` (the same model, data and per-rank batch in a hand-written Horovod loop,
`fe_dist.distributed.reference`), ``comm_free`` (that loop skipping the allreduce).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from typing import Any



def process_age() -> float:
    """Seconds since this process started (Linux: /proc; else 0), so the import time counts
    Python's start and every import before the worker's code runs."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# The start of the process on the perf_counter clock.
IMPORT_START = time.perf_counter() - process_age()


def peak_memory_mb(device: str) -> float:
    """The GPU's peak allocation on a GPU rank, else the process's peak resident memory."""
    if device.startswith("GPU"):
        import tensorflow as tf
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def versions(backend: str) -> dict[str, str]:
    """TensorFlow, Keras, numpy and (from the package metadata) Horovod and mpi4py."""
    import importlib.metadata

    import keras
    import numpy as np
    import tensorflow as tf

    found = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
             "python": sys.version.split()[0], "backend": backend}
    for package in ("horovod", "mpi4py"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    if backend.startswith("horovod"):  # Horovod is loaded already: its build (NCCL or not)
        from fe_dist.distributed.horovod import build_info
        found.update(build_info())
    return found


def make_step_timer(loss_key: str) -> Any:
    """A trace that stamps the end of every train step. It reads the loss, so each step has
    finished when its stamp is taken, as the reference loop fetches its loss each step."""
    from fe_dist.trace import Trace

    class StepTimer(Trace):
        def __init__(self, loss_key: str) -> None:
            super().__init__(inputs=loss_key, mode="train")
            self.stamps: dict[int, list[float]] = {}

        def on_epoch_begin(self, data: Any) -> None:
            self.stamps[self.system.epoch_idx] = [time.perf_counter()]

        def on_batch_end(self, data: Any) -> None:
            self.stamps[self.system.epoch_idx].append(time.perf_counter())

    return StepTimer(loss_key)


def _probe_sizes(grad_bytes: list[int]) -> list[int]:
    """Buffer sizes for the cost model's fit: a spread around the gradients' sizes."""
    sizes = {2**16, 2**20, 2**23} | set(grad_bytes)
    return sorted(s // 4 * 4 for s in sizes if s >= 4)


def time_allreduce_buffers(ctx: Any, sizes: list[int], reps: int) -> list[list[float]]:
    """[[bytes, median seconds]] of ``ctx.allreduce_sum`` on one float32 buffer per size, each
    call after a barrier (the collective's time, not the ranks' arrival skew)."""
    import statistics

    import numpy as np
    import tensorflow as tf

    out = []
    for nbytes in sizes:
        x = tf.constant(np.ones(nbytes // 4, np.float32))
        samples = []
        for i in range(reps + 2):  # two warm-up calls: connections, buffers, fusion set-up
            ctx.barrier()
            start = time.perf_counter()
            ctx.allreduce_sum([x], name=f"fe.bench.probe.{nbytes}")[0].numpy()
            if i >= 2:
                samples.append(time.perf_counter() - start)
        out.append([float(nbytes), statistics.median(samples)])
    return out


def time_gradient_allreduce(ctx: Any, model: Any, reps: int) -> float:
    """Seconds of one allreduce of ``model``'s gradients as a train step does it (the grouped
    allreduce of fe_dist's GradientReducer, on zeros of the same shapes)."""
    import tensorflow as tf

    from fe_dist.distributed import COMPRESSIONS, GradientReducer, TrafficCounters

    grads = [tf.zeros_like(v) for v in model.trainable_variables]
    reducer = GradientReducer(COMPRESSIONS[None], "grouped", TrafficCounters())

    @tf.function
    def reduce_once():
        return reducer(ctx, grads, name=f"fe.bench.{model.model_name}")

    for _ in range(2):
        reduce_once()
    ctx.barrier()
    start = time.perf_counter()
    for _ in range(reps):
        out = reduce_once()
    out[0].numpy()
    return (time.perf_counter() - start) / reps


def run_fe_dist(args: argparse.Namespace) -> None:
    """The workload as fe_dist programs (fixed, then progressive schedule) on this rank."""
    import fe_dist as fe
    from fe_dist.bench import workloads as wl
    from fe_dist.bench.results import PhaseTiming, RankResult, print_results
    from fe_dist.distributed.context import host_label
    from fe_dist.op.tensorop import Resize, Scale
    from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
    from fe_dist.op.tensorop.model import ModelOp
    from fe_dist.schedule import Scheduler

    ctx = fe.distributed.init()
    imported = time.perf_counter() - IMPORT_START
    if args.gpu and not ctx.device.startswith("GPU"):
        raise fe.errors.ConfigError(f"fe-bench --gpu: rank {ctx.rank} on {host_label()} sees no "
                                    "GPU (TensorFlow lists none); run without --gpu on CPU hosts.")
    phases: list[PhaseTiming] = []
    startup = {"import": imported}
    all_models: dict[str, Any] = {}
    for schedule in args.schedules.split(","):
        prog = wl.program(args.workload, schedule, args.scaling, ctx.size, args.batch,
                          args.steps, args.image_size, args.warmup)
        x, y = wl.load_data(prog)
        models = {}
        for p in prog.phases:
            key = prog.model_key(p.image_size)
            if key not in models:
                models[key] = fe.build(lambda s=p.image_size: wl.make_model(prog, s),
                                       model_name=f"{schedule}_{key}",
                                       optimizer=wl.make_optimizer, loss_name="ce")
        all_models.update({m.model_name: m for m in models.values()})
        indexed = list(enumerate(prog.phases))
        resize = {i: Resize(inputs="x", size=(p.image_size, p.image_size), outputs="x")
                  if p.image_size != prog.max_size else None for i, p in indexed}
        pipeline = fe.Pipeline(
            data={"train": {"x": x, "y": y}},
            batch_size=Scheduler({i: p.global_batch for i, p in indexed}),
            ops=([Scheduler(resize)] if any(resize.values()) else [])
            + [Scale(inputs="x", scalar=1.0 / 255, outputs="x")])
        network = fe.Network(ops=[
            Scheduler({i: ModelOp(inputs="x", model=models[prog.model_key(p.image_size)],
                                  outputs="p") for i, p in indexed}),
            SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
        timer = make_step_timer("ce")
        est = fe.Estimator(pipeline=pipeline, network=network, epochs=len(prog.phases),
                           verbose=False, evaluate=False, traces=[timer])
        summary = est.fit()
        startup[f"to_first_step.{schedule}"] = summary.records[0].timeline["first_step_end"]
        for key, value in getattr(est, "startup_seconds", {}).items():
            startup[f"{key}.{schedule}"] = value
        for i, p in indexed:
            rec = summary.records[i]
            stamps = timer.stamps[i]
            steps = [b - a for a, b in zip(stamps, stamps[1:])][prog.warmup:]
            model = models[prog.model_key(p.image_size)]
            reduce_s = time_gradient_allreduce(ctx, model, args.allreduce_reps) \
                if ctx.size > 1 else None
            phases.append(PhaseTiming(
                schedule=schedule, phase=i, image_size=p.image_size,
                global_batch=p.global_batch, rank_batch=rec.per_rank_batch[ctx.rank],
                step_seconds=steps, allreduce_bytes_per_step=rec.allreduced_bytes_per_step,
                allreduce_seconds=reduce_s))
    probe = []
    if ctx.size > 1:
        grad_bytes = [int(sum(v.numpy().nbytes for v in m.trainable_variables))
                      for m in all_models.values()]
        probe = time_allreduce_buffers(ctx, _probe_sizes(grad_bytes), args.allreduce_reps)
    backend = ctx.backend + (f"/{ctx.controller}" if hasattr(ctx, "controller") else "")
    result = RankResult(variant="fe_dist", workload=args.workload, scaling=args.scaling,
                        rank=ctx.rank, size=ctx.size, host=host_label(), backend=backend,
                        device=ctx.device, threads=ctx.threads,
                        peak_memory_mb=peak_memory_mb(ctx.device), phases=phases,
                        startup=startup, allreduce_probe=probe, versions=versions(backend))
    print_results(ctx.allgather_object(result, "fe_bench.result"), ctx.rank)


def parser() -> argparse.ArgumentParser:
    """The worker's command line (`fe_dist.bench.cli` builds it for each launch)."""
    p = argparse.ArgumentParser(prog="fe-bench worker", description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="fe_dist", choices=["fe_dist", "reference", "comm_free"])
    p.add_argument("--workload", required=True)
    p.add_argument("--schedules", default="fixed,progressive")
    p.add_argument("--scaling", default="weak", choices=["weak", "strong"])
    p.add_argument("--batch", type=int, required=True,
                   help="per-rank batch (weak scaling) or global batch (strong)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--allreduce-reps", type=int, default=10)
    p.add_argument("--gpu", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    """Run one rank."""
    args = parser().parse_args(argv)
    if args.variant == "fe_dist":
        run_fe_dist(args)
    else:
        from fe_dist.distributed.reference import run_reference
        run_reference(args, IMPORT_START)
