"""Tutorial 8 of FastEstimator (changing hyperparameters with Scheduler), on fe_dist.

The seed program with ``fastestimator`` replaced by ``fe_dist`` and the data taken from the
bundled 5,000-digit MNIST sample. Run it on one process or on many:

    python launch/tutorial8_scheduler.py
    fe-horovodrun -np 2 -H localhost:2 python launch/tutorial8_scheduler.py

(`fe-horovodrun` is horovodrun without TensorFlow's start-up lines from its own process;
plain horovodrun runs the same job.)

Options: ``--data PATH`` reads a full MNIST .npz instead; ``--summary PATH`` writes the run
summary as JSON (rank 0).
"""

import argparse

import numpy as np

import fe_dist as fe
from fe_dist.architecture import LeNet
from fe_dist.dataset import mnist
from fe_dist.op.tensorop import Minmax, Resize, Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import Scheduler


def get_estimator(data_path=None, epochs=3):
    # Step 0 - Prepare data
    (x_train, y_train), (x_eval, y_eval) = mnist.load_data(data_path)
    train_data = {"x": np.expand_dims(x_train, -1), "y": y_train}
    eval_data = {"x": np.expand_dims(x_eval, -1), "y": y_eval}
    data = {"train": train_data, "eval": eval_data}

    # Step 1 - Prepare the Pipeline with the Schedulers
    batchsize_scheduler = Scheduler({0: 32, 1: 64, 2: 128})
    resize_scheduler = Scheduler({0: Resize(inputs="x", size=(30, 30), outputs="x"),
                                  1: Resize(inputs="x", size=(32, 32), outputs="x"),
                                  2: Resize(inputs="x", size=(30, 30), outputs="x")})
    normalize_scheduler = Scheduler({0: Minmax(inputs="x", outputs="x"),
                                     2: Scale(inputs="x", scalar=1.0 / 255, outputs="x")})
    pipeline = fe.Pipeline(batch_size=batchsize_scheduler, data=data,
                           ops=[resize_scheduler, normalize_scheduler])

    # Step 2 - Prepare Network with the two models and a Scheduler
    model1 = fe.build(model_def=lambda: LeNet(input_shape=(30, 30, 1)), model_name="model1",
                      optimizer="adam", loss_name="my_loss")
    model2 = fe.build(model_def=lambda: LeNet(input_shape=(32, 32, 1)), model_name="model2",
                      optimizer="adam", loss_name="my_loss")
    model_scheduler = Scheduler({0: ModelOp(inputs="x", model=model1, outputs="y_pred"),
                                 1: ModelOp(inputs="x", model=model2, outputs="y_pred"),
                                 2: ModelOp(inputs="x", model=model1, outputs="y_pred")})
    network = fe.Network(ops=[model_scheduler,
                              SparseCategoricalCrossentropy(inputs=("y", "y_pred"),
                                                            outputs="my_loss")])

    # Step 3 - Build the Estimator and train!
    return fe.Estimator(network=network, pipeline=pipeline, epochs=epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local MNIST .npz (default: bundled sample)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--summary", default=None, help="write the summary JSON here (rank 0)")
    args = parser.parse_args()
    summary = get_estimator(args.data, args.epochs).fit()
    if args.summary and fe.distributed.get_context().is_chief:
        summary.to_json(args.summary)


if __name__ == "__main__":
    main()
