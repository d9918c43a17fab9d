"""MNIST: the bundled 5,000-digit sample, or a full MNIST ``.npz`` from a path you give."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fe_dist.errors import ConfigError

BUNDLED_PATH = Path(__file__).parent / "data" / "mnist_5k.npz"

# Key names: the bundled sample uses x_eval/y_eval, Keras' mnist.npz uses x_test/y_test.
_EVAL_KEYS = (("x_eval", "y_eval"), ("x_test", "y_test"))

Split = tuple[np.ndarray, np.ndarray]


def load_data(path: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Load MNIST as ``((x_train, y_train), (x_eval, y_eval))``, uint8 images of 28×28.

    Args:
        path: A local ``.npz`` with x_train, y_train and x_eval/y_eval (or x_test/y_test, as in
            Keras' ``mnist.npz``). None loads the 5,000-digit sample bundled with fe_dist (4,000
            train, 1,000 eval). Nothing is downloaded.
    """
    path = Path(path) if path is not None else BUNDLED_PATH
    if not path.is_file():
        raise ConfigError(f"MNIST file {str(path)!r} does not exist. Give the path of a local "
                          "mnist.npz, or no path for the bundled sample.")
    with np.load(path) as f:
        keys = set(f.files)
        eval_keys = next((k for k in _EVAL_KEYS if set(k) <= keys), None)
        if not {"x_train", "y_train"} <= keys or eval_keys is None:
            raise ConfigError(f"MNIST file {str(path)!r} has keys {sorted(keys)}; it needs x_train, "
                              "y_train and x_eval, y_eval (or x_test, y_test).")
        x_ev, y_ev = eval_keys
        return (f["x_train"], f["y_train"]), (f[x_ev], f[y_ev])


def export_png(root: str | os.PathLike, path: str | os.PathLike | None = None,
               limit: int | None = None) -> dict[str, Path]:
    """Write MNIST as PNG class folders: ``root/train/<digit>/<n>.png`` and ``root/eval/...``.

    The layout `LabeledDirDataset` reads (class folder names "0".."9", so class index = digit).
    PNG is lossless: the folder decodes to exactly the arrays ``load_data`` returns. Files are
    named by sample position (zero-padded), so sorted order within a class is data order.

    Args:
        root: Folder to write into (created; existing files are overwritten).
        path: A local MNIST ``.npz``; None for the bundled sample.
        limit: Write only the first ``limit`` samples of each split (for quick tests).

    Returns:
        {"train": folder, "eval": folder}.
    """
    import tensorflow as tf  # only the export needs TensorFlow's PNG encoder

    (x_train, y_train), (x_eval, y_eval) = load_data(path)
    folders = {}
    for split, (x, y) in {"train": (x_train, y_train), "eval": (x_eval, y_eval)}.items():
        folder = Path(root) / split
        for digit in range(10):
            (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        n = len(x) if limit is None else min(limit, len(x))
        for i in range(n):
            png = tf.io.encode_png(x[i][..., None]).numpy()
            (folder / str(int(y[i])) / f"{i:06d}.png").write_bytes(png)
        folders[split] = folder
    return folders
