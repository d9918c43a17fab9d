"""``python -m fe_dist.launch -np 2 -H localhost:2 --gloo python train.py``: horovodrun without
TensorFlow's start-up lines from its own process (fe_dist/distributed/horovodrun.py).

A package's ``__main__`` rather than a module ``fe_dist/launch.py``: horovodrun starts each rank
through a ``multiprocessing`` spawn child, which re-runs the main module first unless it is a
``__main__``; that would import fe_dist, so TensorFlow, once more per rank.
"""

import sys

from fe_dist.distributed.horovodrun import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m fe_dist.launch"))
