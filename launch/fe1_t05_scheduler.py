"""FastEstimator's advanced tutorial 5 (Scheduler) on fe_dist.

FastEstimator 1.x's program with ``fastestimator`` replaced by ``fe_dist.fe1`` and MNIST by the
bundled 5,000-digit sample. One change: the tutorial schedules two instances of the same MNIST
data (``EpochScheduler({1: train_data1, 3: train_data2})``); fe_dist trains on one data set per
split, so the port gives that data set for every epoch, which is what the tutorial's schedule
amounts to. Run it on one process or on many:

    python launch/fe1_t05_scheduler.py
    fe-horovodrun -np 2 -H localhost:2 python launch/fe1_t05_scheduler.py

Options for quick runs: ``--train-samples N``; ``--save-dir`` (the ModelSaver folder);
``--summary PATH`` writes the summary as JSON (rank 0).
"""

import argparse
import json
import tempfile

import fe_dist.fe1 as fe
from fe_dist.fe1.architecture.tensorflow import LeNet
from fe_dist.fe1.dataset.data import mnist
from fe_dist.fe1.op.numpyop.multivariate import Rotate
from fe_dist.fe1.op.numpyop.univariate import ExpandDims, Minmax
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.schedule import EpochScheduler, RepeatScheduler
from fe_dist.fe1.trace.io import ModelSaver


def get_estimator(save_folder=None, data_path=None, train_samples=None, epochs=3):
    # Batch size: 32 on odd epochs, 64 on even ones.
    for epoch in range(1, 6):
        print("At epoch {}, batch size is {}".format(
            epoch, RepeatScheduler(repeat_list=[32, 64]).get_current_value(epoch)))

    train_data, eval_data = mnist.load_data(path=data_path)
    if train_samples:
        train_data.split(len(train_data) - train_samples)
    batch_size = RepeatScheduler(repeat_list=[32, 64])

    rotate_op = EpochScheduler(epoch_dict={1: Rotate(image_in="x", image_out="x", limit=30),
                                           3: None})
    pipeline = fe.Pipeline(train_data=train_data,
                           eval_data=eval_data,
                           batch_size=batch_size,
                           ops=[ExpandDims(inputs="x", outputs="x"), rotate_op,
                                Minmax(inputs="x", outputs="x")])

    model_1 = fe.build(model_fn=LeNet, optimizer_fn=EpochScheduler(epoch_dict={1: "adam",
                                                                               2: "sgd"}),
                       model_name="m1")
    model_2 = fe.build(model_fn=LeNet, optimizer_fn="adam", model_name="m2")

    model_map = {1: ModelOp(model=model_1, inputs="x", outputs="y_pred"),
                 3: ModelOp(model=model_2, inputs="x", outputs="y_pred")}
    update_map = {1: UpdateOp(model=model_1, loss_name="ce"),
                  3: UpdateOp(model=model_2, loss_name="ce")}
    network = fe.Network(ops=[EpochScheduler(model_map),
                              CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
                              EpochScheduler(update_map)])

    save_folder = save_folder or tempfile.mkdtemp()
    # Disable model saving by setting None on 3rd epoch:
    modelsaver1 = EpochScheduler({2: ModelSaver(model=model_1, save_dir=save_folder), 3: None})
    modelsaver2 = EpochScheduler({3: ModelSaver(model=model_2, save_dir=save_folder)})
    traces = [modelsaver1, modelsaver2]

    return fe.Estimator(pipeline=pipeline, network=network, traces=traces, epochs=epochs,
                        log_steps=300)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local mnist.npz (default: the sample)")
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--save-dir", default=None)
    parser.add_argument("--summary", default=None, help="write the summary JSON here (rank 0)")
    args = parser.parse_args(argv)
    estimator = get_estimator(args.save_dir, args.data, args.train_samples)
    summary = estimator.fit()
    if args.summary and estimator.is_chief:
        with open(args.summary, "w") as f:
            json.dump({"summary": summary.to_dict(), "final_lrs": estimator.final_lrs}, f)
    return estimator, summary


if __name__ == "__main__":
    main()
