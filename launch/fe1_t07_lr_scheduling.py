"""FastEstimator's advanced tutorial 7 (learning-rate scheduling) on fe_dist.

FastEstimator 1.x's program with ``fastestimator`` replaced by ``fe_dist.fe1`` and MNIST by the
bundled 5,000-digit sample: an epoch-wise ``lr_fn(epoch)`` (epochs from 1) and FastEstimator's
``cosine_decay`` by step (steps from 1) over a cycle of one epoch. The tutorial's cycle is
1875 steps (60,000 digits / 32); here ``cycle_length`` is the epoch's step count of the data
used. (The tutorial's custom step-wise section is not ported.) Run it on one process or many:

    python launch/fe1_t07_lr_scheduling.py
    fe-horovodrun -np 2 -H localhost:2 python launch/fe1_t07_lr_scheduling.py

Options for quick runs: ``--train-samples N``; ``--summary PATH`` writes both runs' summaries
as JSON (rank 0).
"""

import argparse
import json

import fe_dist.fe1 as fe
from fe_dist.fe1.architecture.tensorflow import LeNet
from fe_dist.fe1.dataset.data import mnist
from fe_dist.fe1.op.numpyop.univariate import ExpandDims, Minmax
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.schedule import cosine_decay
from fe_dist.fe1.trace.adapt import LRScheduler

BATCH = 32


def get_pipeline_model_network(model_name="LeNet", data_path=None, train_samples=None):
    train_data, _ = mnist.load_data(path=data_path)
    if train_samples:
        train_data.split(len(train_data) - train_samples)

    pipeline = fe.Pipeline(train_data=train_data,
                           batch_size=BATCH,
                           ops=[ExpandDims(inputs="x", outputs="x"),
                                Minmax(inputs="x", outputs="x")])

    model = fe.build(model_fn=LeNet, optimizer_fn="adam", model_name=model_name)

    network = fe.Network(ops=[
        ModelOp(model=model, inputs="x", outputs="y_pred"),
        CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
        UpdateOp(model=model, loss_name="ce")
    ])

    return pipeline, model, network


def lr_schedule(epoch):
    lr = 0.001 * (20 - epoch + 1) / 20
    return lr


def epoch_wise(data_path=None, train_samples=None):
    pipeline, model, network = get_pipeline_model_network(data_path=data_path,
                                                          train_samples=train_samples)
    traces = LRScheduler(model=model, lr_fn=lr_schedule)
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=3, traces=traces)
    return estimator.fit(), traces


def cosine(data_path=None, train_samples=None):
    pipeline, model, network = get_pipeline_model_network(data_path=data_path,
                                                          train_samples=train_samples)
    cycle = pipeline.train_steps(BATCH)  # the tutorial's 1875: one epoch of steps
    traces = LRScheduler(model=model,
                         lr_fn=lambda step: cosine_decay(step, cycle_length=cycle, init_lr=1e-3))
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=2, traces=traces)
    return estimator.fit(), traces, cycle


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local mnist.npz (default: the sample)")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--summary", default=None, help="write the summaries JSON here (rank 0)")
    args = parser.parse_args(argv)
    history, _ = epoch_wise(args.data, args.train_samples)
    history3, scheduler, cycle = cosine(args.data, args.train_samples)
    print(f"cosine_decay: LeNet_lr at step 1: {scheduler.step_lrs[1]:.8g}; at the end of the "
          f"cycle (step {cycle}): {history3.records[0].learning_rates['LeNet']:.8g}")
    from fe_dist.distributed import get_context
    if args.summary and get_context().is_chief:
        with open(args.summary, "w") as f:
            json.dump({"epoch_wise": history.to_dict(), "cosine": history3.to_dict(),
                       "cycle": cycle, "cosine_step_lrs": scheduler.step_lrs}, f)
    return history, history3


if __name__ == "__main__":
    main()
