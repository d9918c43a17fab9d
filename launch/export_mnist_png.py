"""Write the bundled MNIST sample (or a full MNIST .npz) as PNG class folders.

    python launch/export_mnist_png.py /tmp/mnist_png [--data mnist.npz] [--limit N]

Makes /tmp/mnist_png/train/<digit>/*.png and /tmp/mnist_png/eval/<digit>/*.png, the layout
``fe_dist.dataset.LabeledDirDataset`` reads (see launch/tutorial8_folder.py).
"""

import argparse

from fe_dist.dataset import mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--data", default=None, help="a local MNIST .npz (default: bundled)")
    parser.add_argument("--limit", type=int, default=None, help="samples per split")
    args = parser.parse_args()
    for split, folder in mnist.export_png(args.root, args.data, args.limit).items():
        print(f"{split}: {folder}")


if __name__ == "__main__":
    main()
