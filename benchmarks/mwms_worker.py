"""The alternative a user would pick instead of Horovod: tf.distribute's
MultiWorkerMirroredStrategy, one worker per process, TF_CONFIG on loopback ports.

Same models, data, preprocessing and global batch as fe_dist on the workload, a tf.data pipeline
of its own (the strategy shards it), a custom loop (Keras 3's model.fit does not accept the
strategy's per-replica batches). Worker 0 writes samples/s of each phase's timed epoch as JSON.

    python benchmarks/mwms_worker.py --workload lenet --index 0 --ports 23456,23457 --out m.json
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True, choices=sorted(workloads.WORKLOADS))
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ports", required=True, help="comma-separated loopback ports")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    workers = [f"127.0.0.1:{p}" for p in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                          "task": {"type": "worker", "index": args.index}})
    import tensorflow as tf

    threads = int(os.environ.get("FE_DIST_THREADS", 1))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    import keras

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    spec = workloads.spec(args.workload, args.tiny)
    x, y = workloads.load_data(args.workload, args.tiny)
    models, phases = {}, []
    for batch, image_size in spec["phases"]:
        key = workloads.model_key(args.workload, image_size)
        if key not in models:
            with strategy.scope():
                model = workloads.make_model(args.workload, image_size)
                opt = keras.optimizers.Adam()
                opt.build(model.trainable_variables)
            models[key] = (model, opt)
        model, opt = models[key]

        @tf.function
        def step(batch_data, model=model, opt=opt, batch=float(batch)):
            def replica_step(xb, yb):
                with tf.GradientTape() as tape:
                    pred = model(xb, training=True)
                    loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(yb, pred))
                    scaled = loss / batch
                grads = tape.gradient(scaled, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))  # sums over replicas
                return loss
            per_replica = strategy.run(replica_step, args=batch_data)
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        for epoch in range(workloads.EPOCHS_PER_PHASE):
            perm = np.random.default_rng(epoch).permutation(len(x))
            steps = len(x) // batch
            idx = perm[:steps * batch]
            options = tf.data.Options()
            options.threading.private_threadpool_size = threads
            options.autotune.enabled = False  # as in fe_dist and the hand loop (README, knobs)
            options.experimental_distribute.auto_shard_policy = \
                tf.data.experimental.AutoShardPolicy.DATA
            ds = (tf.data.Dataset.from_tensor_slices((x[idx], y[idx]))
                  .batch(batch, drop_remainder=True)
                  .map(lambda xb, yb, s=image_size: (workloads.preprocess(xb, s), yb),
                       num_parallel_calls=threads)
                  .prefetch(2).with_options(options))
            dist = strategy.experimental_distribute_dataset(ds)
            began = time.perf_counter()
            for batch_data in dist:
                loss = step(batch_data)
            loss.numpy()
            seconds = time.perf_counter() - began
        phases.append({"global_batch": batch, "size": image_size, "steps": steps,
                       "seconds": seconds, "samples_per_sec": steps * batch / seconds})
    if args.index == 0:
        with open(args.out, "w") as f:
            json.dump({"workload": args.workload, "world_size": len(workers),
                       "phases": phases}, f, indent=1)


if __name__ == "__main__":
    main()
