"""fe_dist: progressive distributed training.

FastEstimator-style programs (Pipeline, Network, Estimator, Scheduler) on one process or on many
Horovod ranks, with the same result: ``batch_size`` is the global batch size, and every rank
follows rank 0's schedule.
"""

import os

# TensorFlow's C++ chatter (INFO and WARNING lines) drowns the training log; a value the user
# set is kept.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fe_dist import console  # noqa: E402

# Its start-up lines ignore that setting: import TensorFlow and list its devices with them
# filtered (FE_DIST_QUIET=0 shows them; see fe_dist/console.py).
console.start_tensorflow()

from fe_dist import distributed  # noqa: E402
from fe_dist.build import build  # noqa: E402
from fe_dist.determinism import enable_deterministic  # noqa: E402
from fe_dist.estimator import Estimator  # noqa: E402
from fe_dist.network import Network  # noqa: E402
from fe_dist.pipeline import Pipeline  # noqa: E402
from fe_dist.summary import EpochRecord, Summary  # noqa: E402

__version__ = "0.1.0"

__all__ = ["EpochRecord", "distributed", "Estimator", "Network", "Pipeline", "Summary", "build",
           "enable_deterministic"]
