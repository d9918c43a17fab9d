"""The benchmark's reference columns: a hand-written Horovod training loop, no fe_dist code.

What a Horovod user writes by hand, as Horovod's synthetic benchmark
(examples/tensorflow2/tensorflow2_synthetic_benchmark.py) does it: ``hvd.init``, pin the rank,
broadcast the start weights, a ``tf.function`` step with ``tf.GradientTape`` and one
``hvd.grouped_allreduce`` of the gradients (summed, the loss divided by the global batch, which
is fe_dist's averaging), and warm-up steps left out of the timing. It trains the same model, data,
input ops and per-rank batch as the fe_dist program (`fe_dist.bench.workloads`), so the ratio of
the two is fe_dist's own cost.

``comm_free`` is the same loop skipping the allreduce, with Horovod not started before its timed
steps are over (rank and size from the launcher's environment; Horovod then only gathers the
results to rank 0): the communication-free bound of the run.

It lives here, not in `fe_dist.bench`, because it imports Horovod (this package is the only
place in fe_dist that does); it uses nothing of fe_dist's training code: only the workload
definitions, the rank pinning and the result format.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

_RANK_VARIABLES = (  # (rank, size, local rank, local size) as launchers set them
    ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
)


def launcher_ranks() -> tuple[int, int, int, int]:
    """(rank, size, local rank, local size) from the launcher's environment; (0, 1, 0, 1) for
    a plain process."""
    for names in _RANK_VARIABLES:
        if names[0] in os.environ and names[1] in os.environ:
            rank, size = int(os.environ[names[0]]), int(os.environ[names[1]])
            local_rank = int(os.environ.get(names[2], rank))
            local_size = int(os.environ.get(names[3], size).split("(")[0].split(",")[0])
            return rank, size, local_rank, local_size
    return 0, 1, 0, 1


def run_reference(args: argparse.Namespace, import_start: float) -> None:
    """One rank of the reference (``args.variant == "reference"``) or communication-free loop.

    Rank 0 prints every rank's `fe_dist.bench.results.RankResult`.
    """
    from fe_dist.distributed.pinning import pin

    communicate = args.variant == "reference"
    if communicate:
        import horovod.tensorflow as hvd
        hvd.init()
        rank, size, local_rank, local_size = (hvd.rank(), hvd.size(), hvd.local_rank(),
                                              hvd.local_size())
    else:
        rank, size, local_rank, local_size = launcher_ranks()
    threads, device = pin(local_rank, local_size)
    import numpy as np
    import tensorflow as tf

    from fe_dist.bench import workloads as wl
    from fe_dist.bench.results import PhaseTiming, RankResult, print_results
    from fe_dist.bench.worker import peak_memory_mb, versions
    from fe_dist.distributed.context import host_label
    imported = time.perf_counter() - import_start
    import keras

    phases: list[PhaseTiming] = []
    startup = {"import": imported}
    for schedule in args.schedules.split(","):
        prog = wl.program(args.workload, schedule, args.scaling, size, args.batch, args.steps,
                          args.image_size, args.warmup)
        x, y = wl.load_data(prog)
        models: dict[str, tuple[Any, Any]] = {}
        schedule_start = time.perf_counter()
        for i, phase in enumerate(prog.phases):
            key = prog.model_key(phase.image_size)
            if key not in models:
                model = wl.make_model(prog, phase.image_size)
                opt = wl.make_optimizer()
                opt.build(model.trainable_variables)
                if communicate:  # Keras 3 variables: assign what hvd.broadcast returns
                    for j, v in enumerate(model.variables + opt.variables):
                        v.assign(hvd.broadcast(tf.convert_to_tensor(v), 0,
                                               name=f"ref.init.{schedule}.{key}.{j}"))
                models[key] = (model, opt)
            model, opt = models[key]
            start, local = wl.rank_share(phase.global_batch, size, rank)
            global_batch = float(phase.global_batch)

            @tf.function
            def train_step(xb: Any, yb: Any, model: Any = model, opt: Any = opt,
                           key: str = key) -> Any:
                with tf.GradientTape() as tape:
                    pred = model(xb, training=True)
                    loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(yb, pred))
                    scaled = loss / global_batch
                grads = tape.gradient(scaled, model.trainable_variables)
                if communicate:
                    grads = hvd.grouped_allreduce(grads, op=hvd.Sum, name=f"ref.{key}")
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            steps = len(x) // phase.global_batch
            perm = np.random.default_rng(i).permutation(len(x))
            idx = perm[:steps * phase.global_batch].reshape(steps, phase.global_batch)
            idx = idx[:, start:start + local].ravel()
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.autotune.enabled = False  # as fe_dist's Pipeline by default
            ds = (tf.data.Dataset.from_tensor_slices((x[idx], y[idx])).batch(local)
                  .map(lambda xb, yb, s=phase.image_size: (wl.preprocess(xb, s, prog.max_size),
                                                           yb), num_parallel_calls=threads)
                  .prefetch(2).with_options(options))
            stamps = [time.perf_counter()]
            for xb, yb in ds:
                train_step(xb, yb).numpy()
                stamps.append(time.perf_counter())
                if i == 0 and len(stamps) == 2:
                    startup[f"to_first_step.{schedule}"] = stamps[1] - schedule_start
            grad_bytes = sum(int(np.prod(v.shape)) * 4 for v in model.trainable_variables)
            phases.append(PhaseTiming(
                schedule=schedule, phase=i, image_size=phase.image_size,
                global_batch=phase.global_batch, rank_batch=local,
                step_seconds=[b - a for a, b in zip(stamps, stamps[1:])][prog.warmup:],
                allreduce_bytes_per_step=grad_bytes if communicate and size > 1 else 0.0))
    backend = "horovod (hand-written loop)" if communicate else "none (allreduce skipped)"
    result = RankResult(variant=args.variant, workload=args.workload, scaling=args.scaling,
                        rank=rank, size=size, host=host_label(), backend=backend, device=device,
                        threads=threads, peak_memory_mb=peak_memory_mb(device), phases=phases,
                        startup=startup, versions=versions(backend))
    if size > 1:
        if not communicate:
            # Started only now, after the timed steps, to gather the results to rank 0.
            import horovod.tensorflow as hvd
            hvd.init()
        everyone = hvd.allgather_object(result, name="fe_bench.result")
    else:
        everyone = [result]
    print_results(everyone, rank)
