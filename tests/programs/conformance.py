"""The Keras conformance cases without batch statistics or per-rank random draws
(tests/conformance/keras_cases.py: MULTIRANK), trained by fe_dist on every rank of one launch.

Each case starts from the initial weights the test wrote (``<out>/init_<case>.npz``, Keras' own
initialisation); every rank writes its final weights and optimizer variables
(``<out>/rank<r>_<case>.npz``) and a report (``<out>/rank<r>.json``: per case "ok" or the
ConfigError, the optimizer type and the per-rank batch sizes). The test compares every rank with
Keras' model.fit on one process.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "conformance"))

import fe_dist.distributed  # noqa: E402
from fe_dist.errors import ConfigError  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", nargs="*", default=None)
    args = parser.parse_args()
    ctx = fe_dist.distributed.init()
    import keras_cases  # noqa: E402  (after init: it imports TensorFlow's layers)

    out = Path(args.out)
    report = {"rank": ctx.rank, "size": ctx.size, "backend": ctx.backend, "cases": {}}
    for name in args.cases or keras_cases.MULTIRANK:
        case = keras_cases.BY_NAME[name]
        with np.load(out / f"init_{name}.npz") as saved:
            init = [saved[f"w{i}"] for i in range(len(saved.files))]
        try:
            result = keras_cases.fe_fit(case, init)
        except ConfigError as err:  # raised on every rank together: go on with the next case
            report["cases"][name] = {"status": f"ConfigError: {err}"}
            continue
        result.save(out / f"rank{ctx.rank}_{name}.npz")
        report["cases"][name] = {"status": "ok", "optimizer_type": result.optimizer_type,
                                 "per_rank_batch": result.per_rank_batch}
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(report, indent=1))
