"""Keras is the oracle: each case of keras_cases.py trained by fe_dist ends with the weights and
optimizer state of Keras' own model.fit on the same batches from the same initial weights; on
one process (in this process, local backend) and, for every case without batch statistics or
per-rank random draws, on 2 ranks (one horovodrun --gloo launch for all of them).
"""

import json
import os

import numpy as np
import pytest

import keras_cases as kc
from conftest import launch, read_reports

_ORACLE: dict[str, tuple[list[np.ndarray], kc.Result]] = {}


def oracle(name: str) -> tuple[list[np.ndarray], kc.Result]:
    """(initial weights, Keras' fit from them) of case ``name``, computed once."""
    if name not in _ORACLE:
        case = kc.BY_NAME[name]
        init = kc.initial_weights(case)
        _ORACLE[name] = init, kc.keras_fit(case, init)
    return _ORACLE[name]


def assert_matches(case: kc.Case, ours: kc.Result, reference: kc.Result,
                   init: list[np.ndarray], where: str) -> None:
    d = kc.differences(case, ours, reference, init)
    if os.environ.get("FE_DIST_CONFORMANCE_REPORT"):  # a table of the differences, on request
        with open(os.environ["FE_DIST_CONFORMANCE_REPORT"], "a") as f:
            f.write(json.dumps({"case": case.name, "where": where, **d}) + "\n")
    assert d["structure"] is None, f"{case.name} ({where}): {d['structure']}"
    rtol, atol = case.tolerance
    # The comparison means something only if training moved the weights far beyond it.
    assert d["keras_moved"] > 100 * atol, d
    assert d["tolerance_units"] <= 1.0, (
        f"{case.name} ({where}): fe_dist's weights or optimizer state differ from Keras' fit "
        f"by up to {d['max_abs_diff']:.3g} ({d['tolerance_units']:.3g} x the tolerance "
        f"rtol={rtol}, atol={atol}; Keras moved the weights by {d['keras_moved']:.3g})")


@pytest.mark.parametrize("name", [c.name for c in kc.CASES])
def test_one_process_equals_keras_fit(name):
    case = kc.BY_NAME[name]
    init, reference = oracle(name)
    assert_matches(case, kc.fe_fit(case, init), reference, init, "one process")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every MULTIRANK case on 2 ranks, in one launch; each rank's report."""
    out = tmp_path_factory.mktemp("conformance")
    for name in kc.MULTIRANK:
        np.savez(out / f"init_{name}.npz",
                 **{f"w{i}": w for i, w in enumerate(oracle(name)[0])})
    proc = launch(["conformance.py"], out, np=2, launcher="gloo", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, read_reports(out, 2)


@pytest.mark.multirank
@pytest.mark.parametrize("name", kc.MULTIRANK)
def test_two_ranks_equal_keras_fit(two_ranks, name):
    out, reports = two_ranks
    case = kc.BY_NAME[name]
    init, reference = oracle(name)
    for report in reports:
        assert report["size"] == 2 and report["backend"] != "local", report
        entry = report["cases"][name]
        assert entry["status"] == "ok", entry
        # Odd global batches split unevenly: each rank's share weighs its gradient.
        assert entry["per_rank_batch"] == [(case.batch + 1) // 2, case.batch // 2]
        ours = kc.Result.load(out / f"rank{report['rank']}_{name}.npz",
                              entry["optimizer_type"], entry["per_rank_batch"])
        assert_matches(case, ours, reference, init, f"rank {report['rank']} of 2")


# -- what fe_dist refuses instead of training differently from Keras -----------------------------
class _OwnTrainStep(kc.keras.Model):
    def train_step(self, data):  # a GAN-style custom step: fe_dist would never call it
        return super().train_step(data)


class _OwnComputeLoss(kc.keras.Model):
    def compute_loss(self, *args, **kwargs):  # extra loss terms: fe_dist would never call it
        return super().compute_loss(*args, **kwargs)


def _functional(cls=kc.keras.Model, **bn):
    x = kc.keras.Input((6,))
    h = kc.L.BatchNormalization(**bn)(kc.L.Dense(4)(x)) if bn else kc.L.Dense(4)(x)
    return cls(x, kc.L.Dense(3)(h))


def _compiled():
    model = _functional()
    model.compile(optimizer=kc.keras.optimizers.SGD(0.01), loss="mse")
    return model


@pytest.mark.parametrize("model_def, names", [
    (_compiled, ["compile()", "fe.build(optimizer=", "loss op", "compile=False"]),
    (lambda: _functional(_OwnTrainStep), ["train_step", "_OwnTrainStep", "ops"]),
    (lambda: _functional(_OwnComputeLoss), ["compute_loss", "_OwnComputeLoss", "LossOp"]),
    (lambda: _functional(synchronized=True), ["synchronized=True", "SyncBatchNormalization"]),
], ids=["compiled_model", "train_step_override", "compute_loss_override",
        "synchronized_batchnorm"])
def test_refused_before_training(model_def, names):
    """Keras features fe_dist would not honour are refused when the model is built, naming
    the feature and the alternative."""
    import fe_dist as fe
    from fe_dist.errors import ConfigError
    with pytest.raises(ConfigError) as err:
        fe.build(model_def, "refused", optimizer="sgd")
    for name in names:
        assert name in str(err.value), str(err.value)
