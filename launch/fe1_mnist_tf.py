"""FastEstimator's apphub ``image_classification/mnist/mnist_tf.py`` on fe_dist.

FastEstimator 1.x's program with ``fastestimator`` replaced by ``fe_dist.fe1`` and the data by
the bundled 5,000-digit MNIST sample (FastEstimator downloads 60,000 / 10,000 digits; ``--data
PATH`` reads a full ``mnist.npz``). Run it on one process or on many:

    python launch/fe1_mnist_tf.py
    fe-horovodrun -np 2 -H localhost:2 python launch/fe1_mnist_tf.py

Options for quick runs: ``--epochs``, ``--batch-size``, ``--train-samples N`` (the first N
training samples); ``--summary PATH`` writes the run summary and test metrics as JSON (rank 0).
"""

import argparse
import json
import tempfile

import fe_dist.fe1 as fe
from fe_dist.fe1.architecture.tensorflow import LeNet
from fe_dist.fe1.dataset.data import mnist
from fe_dist.fe1.op.numpyop.univariate import ExpandDims, Minmax
from fe_dist.fe1.op.tensorop.loss import CrossEntropy
from fe_dist.fe1.op.tensorop.model import ModelOp, UpdateOp
from fe_dist.fe1.pipeline import Pipeline
from fe_dist.fe1.trace.io import BestModelSaver
from fe_dist.fe1.trace.metric import Accuracy


def get_estimator(epochs=2, batch_size=32, save_dir=tempfile.mkdtemp(), data_path=None,
                  train_samples=None):
    # step 1
    train_data, eval_data = mnist.load_data(path=data_path)
    if train_samples:  # a reduced run: keep train_samples of the training set
        train_data.split(len(train_data) - train_samples)
    test_data = eval_data.split(0.5)
    pipeline = Pipeline(train_data=train_data,
                        eval_data=eval_data,
                        test_data=test_data,
                        batch_size=batch_size,
                        ops=[ExpandDims(inputs="x", outputs="x"), Minmax(inputs="x", outputs="x")])

    # step 2
    model = fe.build(model_fn=LeNet, optimizer_fn="adam")
    network = fe.Network(ops=[
        ModelOp(model=model, inputs="x", outputs="y_pred"),
        CrossEntropy(inputs=("y_pred", "y"), outputs="ce"),
        UpdateOp(model=model, loss_name="ce")
    ])
    # step 3
    traces = [
        Accuracy(true_key="y", pred_key="y_pred"),
        BestModelSaver(model=model, save_dir=save_dir, metric="accuracy", save_best_mode="max")
    ]
    estimator = fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, traces=traces)
    return estimator


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a local mnist.npz (default: the sample)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--save-dir", default=tempfile.mkdtemp())
    parser.add_argument("--summary", default=None, help="write the summary JSON here (rank 0)")
    args = parser.parse_args(argv)
    est = get_estimator(epochs=args.epochs, batch_size=args.batch_size, save_dir=args.save_dir,
                        data_path=args.data, train_samples=args.train_samples)
    summary = est.fit()
    test = est.test()
    if args.summary and fe_dist_is_chief():
        with open(args.summary, "w") as f:
            json.dump({"summary": summary.to_dict(), "test": test}, f)
    return summary, test


def fe_dist_is_chief():
    from fe_dist.distributed import get_context
    return get_context().is_chief


if __name__ == "__main__":
    main()
