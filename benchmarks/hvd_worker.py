"""The baseline a Horovod user writes by hand: plain tf.GradientTape + hvd.grouped_allreduce.

Same models, data, preprocessing, global and per-rank batch as fe_dist on the workload; no
fe_dist code. Rank 0 writes samples/s of each phase's timed (last) epoch as JSON.

    horovodrun -np 2 -H localhost:2 python benchmarks/hvd_worker.py --workload lenet --out h.json
"""

import argparse
import json
import os
import sys
import time

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True, choices=sorted(workloads.WORKLOADS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--no-allreduce", action="store_true",
                        help="skip the gradient allreduce: the communication-free bound")
    parser.add_argument("--no-horovod", action="store_true",
                        help="implies --no-allreduce, and Horovod is not started either (rank "
                             "and size from horovodrun's environment; the same seed gives every "
                             "rank the same start weights)")
    parser.add_argument("--autotune", action="store_true",
                        help="tf.data autotune on (default off, as in fe_dist's Pipeline)")
    args = parser.parse_args()
    use_hvd = not args.no_horovod
    if use_hvd:
        hvd.init()
    threads = int(os.environ.get("FE_DIST_THREADS", 1))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    import keras

    spec = workloads.spec(args.workload, args.tiny)
    x, y = workloads.load_data(args.workload, args.tiny)
    if use_hvd:
        rank, size = hvd.rank(), hvd.size()
    else:
        args.no_allreduce = True
        rank, size = int(os.environ["HOROVOD_RANK"]), int(os.environ["HOROVOD_SIZE"])
    models, phases = {}, []
    for batch, image_size in spec["phases"]:
        key = workloads.model_key(args.workload, image_size)
        if key not in models:
            model = workloads.make_model(args.workload, image_size)
            opt = keras.optimizers.Adam()
            opt.build(model.trainable_variables)
            for i, v in enumerate(model.variables + opt.variables if use_hvd else []):
                v.assign(hvd.broadcast(tf.convert_to_tensor(v), 0, name=f"init.{key}.{i}"))
            models[key] = (model, opt)
        model, opt = models[key]
        local = batch // size + (1 if rank < batch % size else 0)
        start = sum(batch // size + (1 if r < batch % size else 0) for r in range(rank))

        @tf.function
        def step(xb, yb, model=model, opt=opt, batch=float(batch), key=key):
            with tf.GradientTape() as tape:
                pred = model(xb, training=True)
                loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(yb, pred))
                scaled = loss / batch
            grads = tape.gradient(scaled, model.trainable_variables)
            if not args.no_allreduce:
                grads = hvd.grouped_allreduce(grads, op=hvd.Sum, name=f"grads.{key}")
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        epoch_rates = []
        for epoch in range(workloads.EPOCHS_PER_PHASE):
            perm = np.random.default_rng(epoch).permutation(len(x))
            steps = len(x) // batch
            idx = perm[:steps * batch].reshape(steps, batch)[:, start:start + local].ravel()
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.autotune.enabled = args.autotune
            tune = tf.data.AUTOTUNE if args.autotune else None
            ds = (tf.data.Dataset.from_tensor_slices((x[idx], y[idx])).batch(local)
                  .map(lambda xb, yb, s=image_size: (workloads.preprocess(xb, s), yb),
                       num_parallel_calls=tune or threads)
                  .prefetch(tune or 2).with_options(options))
            began = time.perf_counter()
            for xb, yb in ds:
                loss = step(xb, yb)
            loss.numpy()
            seconds = time.perf_counter() - began
            epoch_rates.append(steps * batch / seconds)
        phases.append({"global_batch": batch, "size": image_size, "steps": steps,
                       "seconds": seconds, "samples_per_sec": steps * batch / seconds,
                       "epoch_samples_per_sec": epoch_rates})
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump({"workload": args.workload, "world_size": size, "phases": phases}, f,
                      indent=1)


if __name__ == "__main__":
    main()
