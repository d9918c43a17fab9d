"""The context: its gradient allreduce (on the local twin) and the automatic backend choice."""

import os

import pytest
import tensorflow as tf

import fe_dist as fe
from fe_dist import distributed
from fe_dist.errors import ConfigError


@pytest.mark.parametrize("mode,names", [("grouped", ["g"]), ("per_tensor", ["g.0", "g.1"])])
@pytest.mark.parametrize("compression", [None, "fp16"])
def test_allreduce_modes_issue_one_collective_per_group_or_per_tensor(monkeypatch, mode, names,
                                                                      compression):
    ctx = fe.distributed.get_context()
    calls = []
    monkeypatch.setattr(ctx, "allreduce_sum", lambda tensors, name: calls.append(
        (name, [t.dtype.name for t in tensors])) or list(tensors))
    counters = distributed.TrafficCounters()
    reducer = distributed.GradientReducer(distributed.COMPRESSIONS[compression], mode, counters)
    out = reducer(ctx, [tf.fill([3], 2.0), tf.ones([2, 2])], name="g")
    sent = "float16" if compression else "float32"
    assert [name for name, _ in calls] == names
    assert {d for _, dtypes in calls for d in dtypes} == {sent}
    assert out[0].numpy().tolist() == [2.0] * 3 and out[1].dtype == tf.float32
    assert counters.read() == (2, 7 * (2 if compression else 4))


def test_unknown_allreduce_mode_names_the_choices():
    with pytest.raises(ConfigError, match="allreduce must be one of.*per_tensor.*'ring'"):
        fe.Network(ops=[], allreduce="ring")


@pytest.mark.parametrize("env,comm,expected", [
    ({}, None, "local"),                                              # plain python
    ({"HOROVOD_RANK": "0", "HOROVOD_SIZE": "2"}, None, "horovod"),    # horovodrun --gloo
    ({"OMPI_COMM_WORLD_SIZE": "2"}, None, "mpi"),                     # mpirun on CPU ranks
    ({"PMI_SIZE": "2"}, None, "mpi"),                                 # MPICH
    ({"OMPI_COMM_WORLD_SIZE": "2", "HOROVOD_CYCLE_TIME": "5"}, None, "horovod"),  # tunes Horovod
    ({}, object(), "mpi"),                                            # init(comm=...)
])
def test_auto_backend(monkeypatch, env, comm, expected):
    for key in list(os.environ):
        if key.startswith(("HOROVOD_", "OMPI_", "PMI")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert distributed._auto_backend(comm) == expected


def test_unwatched_disarms_the_watchdog_and_rearms_it():
    from fe_dist.distributed.local import LocalContext
    from fe_dist.distributed.watchdog import Watchdog

    ctx = LocalContext()
    ctx.watchdog = Watchdog(rank=0, size=2, timeout=3600)  # as on a multi-rank run
    ctx.watch(True)
    with ctx.unwatched("rank 0's checkpoint"):  # e.g. other ranks wait while rank 0 writes
        assert not ctx.watchdog.armed
    assert ctx.watchdog.armed
    ctx.watch(False)
    with ctx.unwatched("outside fit"):
        pass
    assert not ctx.watchdog.armed  # stays as it was


def test_mpi_backend_on_one_rank_calls_no_mpi_allreduce():
    """``mpirun -np 1`` (fe-bench's np=1 baseline under mpirun): the sum over one rank is the
    tensor itself, with no numpy copy and no MPI_Allreduce per step."""
    import subprocess
    import sys

    from conftest import REPO
    code = (
        "import tensorflow as tf, fe_dist as fe\n"
        "ctx = fe.distributed.init()\n"
        "assert ctx.backend == 'mpi' and ctx.size == 1, (ctx.backend, ctx.size)\n"
        "f = tf.function(lambda x: ctx.allreduce_sum([x, 2 * x], name='g'))\n"
        "a, b = f(tf.ones([3]))\n"
        "assert a.numpy().tolist() == [1.0] * 3 and b.numpy().tolist() == [2.0] * 3\n"
        "print('calls', len(ctx.allreduce_log))\n")
    env = {**os.environ, "FE_DIST_BACKEND": "mpi", "PYTHONPATH": str(REPO),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["calls", "0"], proc.stdout
