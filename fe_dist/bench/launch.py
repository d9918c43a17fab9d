"""How fe-bench starts a job of N ranks: the launch command, the host check, the run itself."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fe_dist.bench.results import RunResult, merge, parse_lines
from fe_dist.errors import ConfigError

LAUNCHERS = ("horovodrun", "mpirun")
_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclasses.dataclass(frozen=True)
class HostSlots:
    """One entry of ``--hosts``: a host name and how many ranks it takes."""

    name: str
    slots: int


def parse_hosts(text: str) -> list[HostSlots]:
    """``host1:4,host2:4`` (a host without ``:N`` takes 1 rank)."""
    hosts = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, slots = item.partition(":")
        try:
            n = int(slots) if slots else 1
        except ValueError:
            n = 0
        if not name or n < 1:
            raise ConfigError(f"fe-bench --hosts: {item!r} is not host or host:slots (e.g. "
                              "host1:4,host2:4).")
        hosts.append(HostSlots(name, n))
    if not hosts:
        raise ConfigError("fe-bench --hosts: no host given (e.g. --hosts localhost:2).")
    return hosts


def hosts_for(hosts: list[HostSlots], np_: int, spread: bool = False) -> list[HostSlots]:
    """The slots that hold ``np_`` ranks: the first hosts' in order (as horovodrun fills
    them), or with ``spread`` an even share on every host (np 2 on 2 hosts: one each)."""
    taken, left = [], np_
    if spread and np_ >= len(hosts):
        share = -(-np_ // len(hosts))
        hosts = [HostSlots(h.name, min(h.slots, share)) for h in hosts]
    for h in hosts:
        if left <= 0:
            break
        taken.append(HostSlots(h.name, min(h.slots, left)))
        left -= h.slots
    if left > 0:
        raise ConfigError(f"fe-bench: --np {np_} is more than the {sum(h.slots for h in hosts)} "
                          "slots of --hosts; add hosts or slots (host:N).")
    return taken


def is_local(name: str) -> bool:
    """The host is this machine by name (no ssh needed)."""
    return name in _LOCAL_NAMES or name == socket.gethostname()


def check_reachable(hosts: list[HostSlots], timeout: float = 20.0) -> None:
    """Every remote host answers ssh non-interactively within ``timeout`` s, or a ConfigError
    naming the ones that do not (all hosts are tried at once, so this takes at most
    ``timeout`` plus a little)."""
    remote = sorted({h.name for h in hosts if not is_local(h.name)})
    if not remote:
        return
    ssh = shutil.which("ssh")
    if ssh is None:
        raise ConfigError(f"fe-bench: hosts {', '.join(remote)} need ssh, and there is no ssh "
                          "on PATH.")

    def probe(name: str) -> str | None:
        cmd = [ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(timeout)}",
               "-o", "StrictHostKeyChecking=accept-new", name, "true"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return f"{name}: no answer within {timeout:.0f} s"
        if proc.returncode != 0:
            return f"{name}: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'ssh failed'}"
        return None

    with concurrent.futures.ThreadPoolExecutor(len(remote)) as pool:
        failures = [f for f in pool.map(probe, remote) if f]
    if failures:
        raise ConfigError("fe-bench: cannot reach host(s) over ssh (passwordless ssh from this "
                          "host to every host is needed, see docs/launching.md): "
                          + "; ".join(failures))


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    """How to launch: which launcher, on which hosts, with which options."""

    launcher: str
    hosts: list[HostSlots]
    interface: str | None = None
    gpu: bool = False
    threads: int | None = None
    python: str = sys.executable
    extra: tuple[str, ...] = ()
    spread: bool = False


def _launcher_binary(name: str) -> str:
    """The launcher next to this Python (the venv's horovodrun), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def command(spec: LaunchSpec, np_: int, worker_args: list[str]) -> list[str]:
    """The command that runs ``fe-bench worker <worker_args>`` on ``np_`` ranks.

    np = 1 on the local host is a plain process (fe_dist's single-process path, the baseline
    of the scaling efficiency); otherwise horovodrun (``--gloo``, or Horovod's own choice with
    ``--gpu``) or Open MPI's mpirun over the hosts' first slots. ``--gpu`` means one rank per
    GPU: give each host as many slots as it has GPUs.
    """
    program = [spec.python, "-m", "fe_dist.bench", "worker", *worker_args]
    used = hosts_for(spec.hosts, np_, spec.spread)
    if np_ == 1 and is_local(used[0].name) and spec.launcher == "horovodrun":
        return program
    host_list = ",".join(f"{h.name}:{h.slots}" for h in used)
    if spec.launcher == "horovodrun":
        cmd = [_launcher_binary("horovodrun"), "-np", str(np_), "-H", host_list]
        # Gloo for CPU ranks; GPU ranks still use Gloo as the controller, and Horovod built with
        # HOROVOD_GPU_OPERATIONS=NCCL reduces the gradients with NCCL.
        cmd.append("--gloo")
        if spec.interface:
            cmd += ["--network-interface", spec.interface]
        return cmd + list(spec.extra) + program
    if spec.launcher == "mpirun":
        cmd = [_launcher_binary("mpirun"), "-np", str(np_), "-H", host_list, "--bind-to", "none"]
        if os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        if spec.interface:
            cmd += ["--mca", "btl_tcp_if_include", spec.interface, "--mca", "oob_tcp_if_include",
                    spec.interface]
        for var in ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH", "FE_DIST_THREADS",
                    "TF_CPP_MIN_LOG_LEVEL", "NCCL_SOCKET_IFNAME", "FE_DIST_BACKEND"):
            if var in os.environ or var in launch_env(spec):
                cmd += ["-x", var]
        return cmd + list(spec.extra) + program
    raise ConfigError(f"fe-bench --launcher {spec.launcher!r}: use one of {LAUNCHERS}, or run "
                      "'fe-bench worker ...' under your own launcher and 'fe-bench report' on "
                      "its output.")


def launch_env(spec: LaunchSpec) -> dict[str, str]:
    """What the launch adds to the environment."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    if spec.threads:
        env["FE_DIST_THREADS"] = str(spec.threads)
    if spec.gpu and spec.interface:
        env["NCCL_SOCKET_IFNAME"] = spec.interface
    return env


def run(cmd: list[str], spec: LaunchSpec, np_: int, timeout: float, log: Path) -> RunResult:
    """Run one job; its result, or a failed result with the job's error. Never raises for a
    failed job (the next size still runs)."""
    env = {**os.environ, **launch_env(spec)}
    if spec.launcher == "mpirun" and os.geteuid() == 0:
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    start = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A new session: on a timeout the whole job (launcher and ranks) is ended.
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    except OSError as err:
        return RunResult(variant="", workload="", scaling="", np=np_, command=cmd, ok=False,
                         error=f"could not start {cmd[0]}: {err}")
    try:
        output, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except KeyboardInterrupt:  # the job is in its own session: Ctrl-C does not reach it
        os.killpg(proc.pid, signal.SIGTERM)
        raise
    except subprocess.TimeoutExpired:
        # SIGTERM first: horovodrun and mpirun then end their ranks, which live in sessions
        # of their own (SIGKILL would leave them running).
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        timed_out = True
    wall = time.monotonic() - start
    log.write_text(output)
    lines = output.splitlines()
    noise = ("oneDNN", "cuda drivers", "absl::InitializeLog", "FE_BENCH_RESULT",
             "Unable to register", "computation placer")
    tail = "\n".join(line for line in lines if not any(n in line for n in noise))[-3000:]
    if timed_out:
        return RunResult(variant="", workload="", scaling="", np=np_, command=cmd, ok=False,
                         error=f"did not finish within {timeout:.0f} s (log {log})\n{tail}",
                         wall_seconds=wall)
    result = merge(parse_lines(lines), np_, cmd, wall, tail)
    if proc.returncode != 0:
        result.ok = False
        result.error = f"exit status {proc.returncode} (log {log})\n{tail}"
    return result
