"""fe-bench (fe_dist/bench): tiny smoke runs of every workload, failures reported per size, an
unreachable host, the --gpu launch commands, and the cost model. No timed assertions."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO

from fe_dist.bench import costmodel
from fe_dist.bench.results import PhaseTiming, RankResult, merge


def fe_bench(args, timeout=900):
    env = {k: v for k, v in os.environ.items()
           if k != "FE_DIST_BACKEND" and not k.startswith("HOROVOD_")}
    env.update({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "fe_dist.bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def keras_param_bytes(make):
    import keras
    model = make()
    return sum(int(np.prod(v.shape)) * 4 for v in model.trainable_weights)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """One fe-bench run shared by the LeNet checks: np 1 and 2, every variant, weak and
    strong scaling; strong scaling of a global batch of 1 cannot run on 2 ranks, so those
    launches fail (in the worker, on its ranks) while the others run."""
    out = tmp_path_factory.mktemp("bench_lenet")
    proc, _ = fe_bench(["--np", "1,2", "--workload", "lenet", "--batch", "1", "--steps", "4",
                        "--warmup", "1", "--threads", "1", "--scaling", "weak,strong",
                        "--out", str(out)])
    return proc, out, json.loads((out / "results.json").read_text())


def test_lenet_every_variant_and_size(lenet_run):
    proc, out, data = lenet_run
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # a size failed
    runs = {(r["variant"], r["scaling"], r["np"]): r for r in data["runs"]}
    assert len(runs) == 9
    for variant in ("fe_dist", "reference", "comm_free"):
        for np_ in (1, 2):
            run = runs[(variant, "weak", np_)]
            assert run["ok"], run["error"]
            # The fixed schedule's one phase, then the progressive ramp 28 -> 30 -> 32 px with
            # batch 1x, 2x, 4x.
            assert [(p["schedule"], p["image_size"], p["global_batch"]) for p in run["phases"]] \
                == [("fixed", 28, np_), ("progressive", 28, np_), ("progressive", 30, 2 * np_),
                    ("progressive", 32, 4 * np_)], run["phases"]
            for p in run["phases"]:
                assert p["steps_timed"] >= 1 and 0 < p["step_p50"] <= p["step_p95"]
            assert len(run["peak_memory_mb"]) == np_ and min(run["peak_memory_mb"]) > 50
            assert run["hosts"] and sorted(sum(run["hosts"].values(), [])) == list(range(np_))
        # The failed size: reported with the worker's own error; the other sizes ran.
        failed = runs[(variant, "strong", 2)]
        assert not failed["ok"] and "leaves a rank without samples" in failed["error"]
    fe2 = runs[("fe_dist", "weak", 2)]
    assert fe2["backend"] == "horovod/gloo" and fe2["versions"]["horovod"] == "0.28.1"
    assert {"tensorflow", "keras"} <= set(fe2["versions"])
    assert fe2["startup"]["import"] > 0.5 and fe2["startup"]["to_first_step.fixed"] > 0
    # Communication accounting against Keras' own parameter count: each step allreduces the
    # active model's gradients (one LeNet per resolution), the reference loop the same, the
    # communication-free bound nothing.
    from fe_dist.architecture import LeNet
    for i, p in enumerate(fe2["phases"]):
        size = p["image_size"]
        grads = keras_param_bytes(lambda: LeNet(input_shape=(size, size, 1)))
        assert p["allreduce_bytes_per_step"] == grads
        assert runs[("reference", "weak", 2)]["phases"][i]["allreduce_bytes_per_step"] == grads
        assert runs[("comm_free", "weak", 2)]["phases"][i]["allreduce_bytes_per_step"] == 0
        assert p["allreduce_seconds"] > 0
    rows = [r for r in data["rows"] if r["np"] == 2 and r["scaling"] == "weak"]
    assert len(rows) == 4
    for r in rows:
        assert r["efficiency"] > 0 and r["fe_over_reference"] > 0 and r["fe_over_comm_free"] > 0
        assert r["measured_over_model"] > 0
    assert data["cost_model"]["bandwidth"] > 0 and data["cost_model"]["latency"] >= 0
    assert {p["schedule"] for p in data["projection"]} == {"fixed", "progressive"}
    md = (out / "results.md").read_text()
    assert "| lenet | progressive | weak | 32, 8 | 2 |" in md
    assert "**Projection** (not measured" in md and "Failed launches:" in md
    assert "leaves a rank without samples" in md
    assert (out / "scaling.png").stat().st_size > 1000
    # Rank 0 alone prints every rank's result (horovodrun prefixes each line with the rank that
    # wrote it): mpirun interleaves several writers' output within lines.
    for variant in ("fe_dist", "reference", "comm_free"):
        lines = (out / "logs" / f"lenet_{variant}_weak_np2.log").read_text().splitlines()
        ours = [line for line in lines if "FE_BENCH_RESULT" in line]
        assert ours and all(line.startswith("[0]<stdout>:FE_BENCH_RESULT") for line in ours), \
            [line[:40] for line in ours if not line.startswith("[0]")]
        assert {line.split()[1] for line in ours} == {"0", "1"}


def test_report_mode_reads_a_users_job_log(lenet_run, tmp_path):
    """``fe-bench report`` on the output of a job launched by someone else (here: the log of
    one of the launches above) makes the same rows."""
    _, out, data = lenet_run
    log = str(out / "logs" / "lenet_fe_dist_weak_np2.log")
    proc, _ = fe_bench(["report", log, "--out", str(tmp_path)], timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    mine = json.loads((tmp_path / "results.json").read_text())
    expected = [r for r in data["rows"] if r["np"] == 2 and r["scaling"] == "weak"]
    assert [r["fe_dist"] for r in mine["rows"]] == [r["fe_dist"] for r in expected]
    # Two jobs of the same variant and size are two rounds of it.
    proc, _ = fe_bench(["report", log, log, "--out", str(tmp_path / "twice")], timeout=120)
    twice = json.loads((tmp_path / "twice" / "results.json").read_text())
    assert [r["rounds"] for r in twice["rows"]] == [2] * len(expected)
    assert [r["fe_dist"] for r in twice["rows"]] == [r["fe_dist"] for r in expected]


def test_resnets_tiny(tmp_path):
    """The CIFAR ResNet and ResNet-50 (keras.applications, weights=None) at a tiny size on 2
    ranks, both schedules."""
    import keras

    from fe_dist.bench.workloads import cifar_resnet
    proc, _ = fe_bench(["--np", "2", "--workload", "cifar_resnet,resnet50", "--image-size", "32",
                        "--batch", "1", "--steps", "2", "--warmup", "1", "--threads", "1",
                        "--variants", "fe_dist", "--out", str(tmp_path)], timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    runs = {r["workload"]: r for r in data["runs"]}
    assert [p["image_size"] for p in runs["cifar_resnet"]["phases"]] == [32, 24, 28, 32]
    assert [p["image_size"] for p in runs["resnet50"]["phases"]] == [32, 32, 32, 32]
    assert [p["global_batch"] for p in runs["resnet50"]["phases"]] == [2, 2, 3, 4]
    resnet50 = keras_param_bytes(lambda: keras.applications.ResNet50(weights=None))
    cifar = keras_param_bytes(cifar_resnet)
    for name, grads in (("resnet50", resnet50), ("cifar_resnet", cifar)):
        for p in runs[name]["phases"]:
            assert p["allreduce_bytes_per_step"] == grads and p["samples_per_sec"] > 0


def test_unreachable_host_ends_the_command_naming_it(tmp_path):
    # 127.0.0.2 is loopback but no sshd listens there: ssh fails at once, nothing leaves the
    # machine.
    proc, seconds = fe_bench(["--hosts", "localhost:1,127.0.0.2:1", "--np", "1,2",
                              "--out", str(tmp_path)], timeout=120)
    assert proc.returncode != 0 and seconds < 60
    assert "cannot reach host(s)" in proc.stderr and "127.0.0.2" in proc.stderr, proc.stderr
    assert not (tmp_path / "logs").exists()  # nothing was launched


def test_gpu_dry_run_prints_the_launch_commands():
    proc, _ = fe_bench(["--hosts", "gpu1:4,gpu2:4", "--np", "1,8", "--workload", "resnet50",
                        "--gpu", "--network-interface", "eth1", "--dry-run"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 6  # 3 variants at np 1 and 8
    worker = (f"{sys.executable} -m fe_dist.bench worker --variant fe_dist --workload resnet50 "
              "--schedules fixed,progressive --scaling weak --batch 64 --steps 50 --warmup 2 "
              "--gpu")
    assert lines[0] == ("TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1 NCCL_SOCKET_IFNAME=eth1 "
                        f"{sys.executable.rsplit('/', 1)[0]}/horovodrun -np 1 -H gpu1:1 --gloo "
                        f"--network-interface eth1 {worker}")
    assert f"-np 8 -H gpu1:4,gpu2:4 --gloo --network-interface eth1 {worker}" in lines[3]
    proc, _ = fe_bench(["--hosts", "gpu1:4,gpu2:4", "--np", "8", "--workload", "resnet50",
                        "--gpu", "--launcher", "mpirun", "--network-interface", "eth1",
                        "--variants", "fe_dist", "--dry-run"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "-np 8 -H gpu1:4,gpu2:4" in proc.stdout and "-x NCCL_SOCKET_IFNAME" in proc.stdout
    assert "--mca btl_tcp_if_include eth1" in proc.stdout
    # --repeats: every size's variants again, round after round.
    proc, _ = fe_bench(["--np", "1,2", "--repeats", "2", "--dry-run"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    variants = [line.split("--variant ")[1].split()[0] for line in proc.stdout.splitlines()]
    assert variants == ["fe_dist", "reference", "comm_free"] * 4


def test_gpu_worker_on_a_cpu_host_says_so():
    proc, _ = fe_bench(["worker", "--workload", "lenet", "--batch", "2", "--steps", "2",
                        "--gpu"], timeout=300)
    assert proc.returncode != 0 and "sees no GPU" in proc.stderr, proc.stderr[-2000:]


def test_cost_model_fit_recovers_known_terms():
    bandwidth, latency = 1.25e9, 40e-6
    points = [(n, b, costmodel.ring_allreduce_seconds(b, n, bandwidth, latency))
              for n in (2, 4) for b in (2**16, 2**20, 2**24)]
    model = costmodel.fit(points)
    assert model.bandwidth == pytest.approx(bandwidth, rel=1e-6)
    assert model.latency == pytest.approx(latency, rel=1e-6)
    assert costmodel.fit(points[:1]) is None


def test_merge_takes_each_steps_slowest_rank():
    def rank(r, steps):
        return RankResult("fe_dist", "lenet", "weak", r, 2, "h", "b", "CPU", 1, 100.0,
                          [PhaseTiming("fixed", 0, 28, 8, 4, steps)])
    run = merge([rank(1, [0.1, 0.4]), rank(0, [0.3, 0.2])], 2, ["cmd"], 1.0)
    assert run.ok and run.phases[0].samples_per_sec == pytest.approx(8 / 0.35)
    missing = merge([rank(0, [0.1])], 2, ["cmd"], 1.0)
    assert not missing.ok and "ranks [1] did not report" in missing.error


def test_results_survive_a_launcher_that_splits_and_interleaves_lines():
    """mpirun forwards a rank's long line in 4096-byte pieces with other ranks' output in
    between: results travel in short parts, reassembled per rank; a rank with a part missing
    is not reported (merge then names it)."""
    from fe_dist.bench.results import CHUNK, parse_lines

    def rank(r):
        return RankResult("fe_dist", "lenet", "weak", r, 2, "h", "b", "CPU", 1, 100.0,
                          [PhaseTiming("fixed", 0, 28, 8, 4, [0.1] * 500)])
    a, b = rank(0).lines(), rank(1).lines()
    assert len(a) >= 3 and max(len(line) for line in a) < CHUNK + 40
    mixed = [f"[{i % 2}]<stdout>:{line}" for pair in zip(a, b) for i, line in enumerate(pair)]
    assert [r.rank for r in parse_lines(mixed)] == [0, 1]
    assert parse_lines(mixed)[1].phases[0].step_seconds == [0.1] * 500
    assert [r.rank for r in parse_lines(a[:-1] + b)] == [1]
    joined = [a[0] + b[0], *a[1:], *b[1:]]  # two ranks' parts on one line
    assert [r.rank for r in parse_lines(joined)] == [0, 1]


def test_report_takes_medians_and_each_rounds_own_ratio():
    """With --repeats, a figure is the median over rounds and a ratio the median of the rounds'
    own ratios (a drifting machine moves both launches of a round together); the cost model's
    compute is the communication-free bound's mean step at the same np."""
    from fe_dist.bench import report
    from fe_dist.bench.results import PhaseResult, RunResult

    def run(variant, np_, round_, rate, nbytes=0.0):
        batch = 8 * np_
        phase = PhaseResult("fixed", 0, 28, batch, 8, 10, batch / rate, batch / rate * 1.5,
                            rate, nbytes, 0.02 if nbytes else None)
        return RunResult(variant, "lenet", "weak", np_, ["cmd"], True, phases=[phase],
                         peak_memory_mb=[100.0] * np_, round=round_)
    runs = [run("fe_dist", 1, 0, 100.0), run("reference", 1, 0, 110.0),
            run("fe_dist", 1, 1, 200.0), run("reference", 1, 1, 180.0),
            run("fe_dist", 1, 2, 150.0), run("reference", 1, 2, 150.0),
            run("fe_dist", 2, 0, 128.0, 1e6), run("comm_free", 2, 0, 160.0)]
    model = costmodel.CostModel(bandwidth=4e7, latency=0.0, points=2)  # 1 MB on 2: 25 ms
    one, two = report.rows(runs, model)
    assert one.rounds == 3 and one.fe_dist == 150.0 and one.reference == 150.0
    assert one.fe_over_reference == pytest.approx(1.0)  # the median of 0.909, 1.111, 1.0
    assert one.fe_over_reference_range == pytest.approx([100 / 110, 200 / 180])
    assert two.efficiency == pytest.approx(128.0 / (2 * 150.0))
    assert two.model_allreduce_ms == pytest.approx(25.0)
    # comm-free at np=2: 16 samples in 0.1 s; plus 25 ms: 128 samples/s, what fe_dist ran at.
    assert two.model_samples_per_sec == pytest.approx(128.0)
    assert two.measured_over_model == pytest.approx(1.0)
    # np=1 compute: 8 samples at 150/s = 53.3 ms per step, plus 25 ms.
    assert two.model_np1_samples_per_sec == pytest.approx(16 / (8 / 150 + 0.025))
    md = report.markdown(report.build(runs, {}))
    assert "| 1.00 [0.91, 1.11] |" in md
