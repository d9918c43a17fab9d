"""Let the run choose its batch size: an `AdaptiveBatch` on the bundled MNIST sample.

A small CNN trains with SGD (momentum 0.9); at each epoch end the run measures the gradient
noise scale B_noise of the model (from the per-rank or half-batch gradients the step already has)
and takes the global batch on its ladder (32, 64, ..., 512) nearest to B_noise for the next
epoch; the learning rate follows by AdaScale's gain ratio. Every rank takes the same decision.

    python launch/adaptive_batch.py [--epochs 6] [--out adaptive_out]
    fe-horovodrun -np 2 -H localhost:2 --gloo python launch/adaptive_batch.py

Rank 0 prints fe_dist's usual epoch lines, each ending with the B_noise estimate
(``... | B_noise 57.3``); the next line's global batch is the decision.
"""

import argparse
import os

import keras

import fe_dist as fe
from fe_dist.dataset import mnist
from fe_dist.op.tensorop import Scale
from fe_dist.op.tensorop.loss import SparseCategoricalCrossentropy
from fe_dist.op.tensorop.model import ModelOp
from fe_dist.schedule import AdaptiveBatch


def cnn() -> keras.Model:
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax")])


def build(epochs: int, out: str | None, initial: int = 32, maximum: int = 512,
          lr: float = 0.02, seed: int = 0) -> fe.Estimator:
    keras.utils.set_random_seed(seed)
    (x, y), (xe, ye) = mnist.load_data()
    data = {"train": {"x": x[..., None], "y": y}, "eval": {"x": xe[..., None], "y": ye}}
    batch = AdaptiveBatch(initial=initial, maximum=maximum, lr_rule="adascale")
    pipeline = fe.Pipeline(data=data, batch_size={"train": batch, "eval": 500},
                           ops=[Scale(inputs="x", scalar=1 / 255, outputs="x")])
    model = fe.build(cnn, model_name="cnn", loss_name="ce",
                     optimizer=lambda: keras.optimizers.SGD(lr, momentum=0.9))
    network = fe.Network([ModelOp(inputs="x", model=model, outputs="p"),
                          SparseCategoricalCrossentropy(inputs=("y", "p"), outputs="ce")])
    return fe.Estimator(pipeline=pipeline, network=network, epochs=epochs, seed=seed,
                        history_dir=None if out is None else os.path.join(out, "history"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default=None, help="write history.csv/json/png there")
    parser.add_argument("--summary", default=None, help="write the summary JSON there")
    args = parser.parse_args()
    summary = build(args.epochs, args.out).fit()
    if args.summary and fe.distributed.get_context().is_chief:
        summary.to_json(args.summary)


if __name__ == "__main__":
    main()
