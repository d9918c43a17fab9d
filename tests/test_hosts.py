"""fe_dist across two emulated hosts (network namespaces with sshd, tests/hosts.py).

The hosts share this machine's file system and cores, so these tests show placement, launch,
rendezvous and failure behaviour across real TCP links, not speed. They need root, iproute2 and
openssh-server (bash .ci/setup); elsewhere they are skipped with the reason, except in CI
(CI=true), where that is a failure.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hosts
from conftest import BIN, REPO, discovery, read_reports
from fe_dist import checkpoint

pytestmark = pytest.mark.multirank
PROGRAMS = REPO / "tests" / "programs"


@pytest.fixture(scope="module")
def cluster():
    reason = hosts.available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the cross-host tests: {reason}")
        pytest.skip(reason)
    try:
        yield hosts.up(2)
    finally:
        hosts.down()


def _env(cluster, extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOROVOD_") and k != "FE_DIST_BACKEND"}
    env = cluster.env(env)
    env["PATH"] = f"{cluster.bin_dir}:{BIN}:{env['PATH'].split(':', 1)[1]}"
    env.update({"PYTHONPATH": str(REPO), "FE_DIST_THREADS": "1", "PYTHONUNBUFFERED": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", **(extra or {})})
    return env


def _start(cluster, cmd, env=None):
    """Start ``cmd`` on h0 (the launcher runs on one of the hosts, as on a cluster)."""
    return cluster.exec_in(cluster.hosts[0], cmd, env=_env(cluster, env), cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)


def _finish(proc, timeout):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"did not finish within {timeout} s (a hang):\n{out[-4000:]}")
    return proc.returncode, out


def _horovodrun(np_, hosts_arg, program, *args, controller="gloo"):
    return [str(BIN / "horovodrun"), "-np", str(np_), "-H", hosts_arg, f"--{controller}",
            "--network-interface", hosts.IFACE, sys.executable, str(PROGRAMS / program), *args]


def _check_placement(reports, per_host):
    """Ranks fill h0 first; local_rank/local_size (and so the thread pinning) follow the host."""
    for r in reports:
        host = r["rank"] // per_host
        assert r["hostname"] == f"h{host}", r
        assert (r["local_rank"], r["local_size"]) == (r["rank"] % per_host, per_host), r
        assert r["threads"] == 1  # FE_DIST_THREADS
    assert len({tuple(sorted(r["checksums"].items())) for r in reports}) == 1  # same weights
    assert all(r["records"] == reports[0]["records"] for r in reports)


def test_seed_tutorial_gloo_four_ranks_on_two_hosts(cluster, tmp_path):
    proc = _start(cluster, _horovodrun(4, "h0:2,h1:2", "hosts_probe.py", "--out", str(tmp_path)))
    code, out = _finish(proc, timeout=420)
    assert code == 0, out[-4000:]
    reports = read_reports(tmp_path, 4)
    _check_placement(reports, per_host=2)
    assert reports[0]["records"][-1]["eval_metrics"]["my_loss_accuracy"] >= 0.90
    assert [r["per_rank_batch"] for r in reports[0]["records"]] == [[8] * 4, [16] * 4, [32] * 4]
    first = next(line for line in out.splitlines() if "fe_dist:" in line)
    assert (f"on 2 hosts: h0 ({hosts.Host(0).address}) ranks 0-1, "
            f"h1 ({hosts.Host(1).address}) ranks 2-3" in first), first


def test_mpirun_with_a_hostfile(cluster, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("h0 slots=2\nh1 slots=2\n")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [str(Path("/usr/bin/mpirun")), "--allow-run-as-root", "-np", "4", "--hostfile",
           str(hostfile), "--mca", "plm_rsh_agent", str(cluster.bin_dir / "ssh"),
           "--mca", "btl_tcp_if_include", hosts.IFACE, "--mca", "oob_tcp_if_include",
           hosts.IFACE, *[a for v in ("PATH", "PYTHONPATH", "FE_DIST_THREADS",
                                       "TF_CPP_MIN_LOG_LEVEL") for a in ("-x", v)],
           sys.executable, str(PROGRAMS / "hosts_probe.py"), "--out", str(out_dir),
           "--epochs", "1"]
    code, out = _finish(_start(cluster, cmd), timeout=300)
    assert code == 0, out[-4000:]
    reports = read_reports(out_dir, 4)
    assert {r["backend"] for r in reports} == {"mpi"}
    _check_placement(reports, per_host=2)
    assert f"h1 ({hosts.Host(1).address}) ranks 2-3" in out


def test_partition_ends_the_job_and_the_run_resumes(cluster, tmp_path):
    ckpt = tmp_path / "ckpt"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = ["--out", str(out_dir), "--ckpt", str(ckpt), "--n-train", "600"]
    proc = _start(cluster, _horovodrun(2, "h0:1,h1:1", "reliability.py", *args,
                                       "--pause-after-epoch0", "4"),
                  env={"FE_DIST_STALL_TIMEOUT": "10"})
    try:
        deadline = time.monotonic() + 180
        while not checkpoint.path(ckpt).exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.1)
        cluster.link(cluster.hosts[1], up=False)  # h1 drops off the network after epoch 0
        cut = time.monotonic()
        code, out = _finish(proc, timeout=120)
        elapsed = time.monotonic() - cut
    finally:
        cluster.link(cluster.hosts[1], up=True)
    assert code != 0, out[-4000:]
    assert elapsed < 60, elapsed
    assert "fe_dist: stall: rank 0 of 2" in out, out[-4000:]
    assert f"h1 ({hosts.Host(1).address}) rank 1" in out.split("fe_dist: stall:")[1], out[-3000:]
    meta, _ = checkpoint.load(ckpt)  # the last complete checkpoint is intact
    assert meta["epoch"] == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    args = ["--out", str(resumed), "--ckpt", str(ckpt), "--n-train", "600", "--resume"]
    code, out = _finish(_start(cluster, _horovodrun(2, "h0:1,h1:1", "reliability.py", *args)),
                        timeout=240)
    assert code == 0, out[-4000:]
    assert "resuming after epoch 0" in out
    reports = read_reports(resumed, 2)
    assert [r["epoch"] for r in reports[0]["records"]] == [0, 1, 2]
    assert reports[0]["weights"] == reports[1]["weights"]


def _events(path: Path) -> list[tuple[int, int, str]]:
    """(epoch, world size, host) lines the elastic program wrote so far."""
    if not path.exists():
        return []
    return [(int(e), int(w), h) for e, w, h in
            (line.split() for line in path.read_text().splitlines() if line.count(" ") == 2)]


def test_elastic_host_lost_and_back(cluster, tmp_path):
    """h1's processes are killed mid-run and the discovery drops h1: h0 goes on alone at the
    same global batch; h1 is listed again and rejoins, synced to h0's state."""
    hosts_file, discover = discovery(tmp_path, "h0:1\nh1:1\n")
    out = tmp_path / "out"
    out.mkdir()
    events = out / "events.txt"
    cmd = [str(BIN / "horovodrun"), "-np", "2", "--min-np", "1", "--max-np", "2", "--gloo",
           "--network-interface", hosts.IFACE, "--host-discovery-script", str(discover),
           "--blacklist-cooldown-range", "1", "2", sys.executable, str(PROGRAMS / "elastic.py"),
           "--scenario", "external", "--hosts-file", str(hosts_file), "--keep-host", "h0",
           "--out", str(out), "--n-train", "2000", "--epochs", "9", "--solo-pause", "2"]
    start = time.monotonic()
    proc = _start(cluster, cmd)

    def wait_for(what, condition, limit=90):
        while not condition(_events(events)):
            if proc.poll() is not None or time.monotonic() - start > limit:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"no {what} after {time.monotonic() - start:.0f} s:\n"
                            f"{_events(events)}\n{proc.communicate()[0][-4000:]}")
            time.sleep(0.1)

    # After epoch 1 on both hosts (epoch 0 is committed everywhere by then, so h0 rolls back
    # to a state trained on 2 ranks): h1 is dropped from the discovery and its processes die.
    wait_for("epoch 1 on 2 ranks", lambda ev: {h for e, w, h in ev if e == 1 and w == 2}
             == {"h0", "h1"})
    hosts_file.write_text("h0:1\n")
    killed = cluster.crash(cluster.hosts[1])
    assert killed, "no processes of the rank on h1 to kill"
    wait_for("epoch on 1 rank", lambda ev: any(w == 1 for _, w, _ in ev))
    hosts_file.write_text("h0:1\nh1:1\n")  # h1 is back
    code, output = _finish(proc, timeout=max(10.0, 120 - (time.monotonic() - start)))
    assert code == 0, output[-4000:]
    reports = read_reports(out, 2)
    assert {r["size"] for r in reports} == {2}
    for report in reports:
        sizes = [r["world_size"] for r in report["records"]]
        # 2 ranks, then h0 alone, then both again: the run ended on 2 ranks.
        assert sizes[0] == 2 and 1 in sizes and sizes[-1] == 2, sizes
        for record in report["records"]:  # global batch kept, per-rank batch recomputed
            assert record["global_batch"] == {0: 32}.get(record["epoch"], 33), record
            expected = {1: [record["global_batch"]],
                        2: [17, 16] if record["global_batch"] == 33 else [16, 16]}
            assert record["per_rank_batch"] == expected[record["world_size"]], record
    assert reports[0]["records"] == reports[1]["records"]  # the returning rank was synced
    assert reports[0]["weights"] == reports[1]["weights"]
    # h1's ranks died, so h1 appears in the events only before the loss and after the rejoin.
    assert [h for _, w, h in _events(events) if w == 1] and \
        {h for _, w, h in _events(events) if w == 1} == {"h0"}


def test_hostname_resolving_to_loopback_is_named_with_the_fix(cluster, tmp_path):
    """Last in the module: it brings the hosts up again without their own names (every host
    has this machine's hostname, which /etc/hosts resolves to 127.0.0.1)."""
    hosts.up(2, own_names=False)
    start = time.monotonic()
    proc = _start(cluster, _horovodrun(2, "h0:1,h1:1", "hosts_probe.py", "--out", str(tmp_path),
                                       "--epochs", "1"))
    code, out = _finish(proc, timeout=120)
    assert code != 0
    assert time.monotonic() - start < 60
    assert f"This host's name '{os.uname().nodename}' resolves to the loopback address" in out, \
        out[-3000:]
    assert f"'{hosts.Host(0).address} {os.uname().nodename}' in /etc/hosts" in out or \
        f"'{hosts.Host(1).address} {os.uname().nodename}' in /etc/hosts" in out, out[-3000:]
