"""Shared test settings: quiet TensorFlow, a fixed thread count, and a horovodrun launcher."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Plain asserts in this helper module show their values when they fail, as in test modules.
pytest.register_assert_rewrite("backend_records")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FE_DIST_BACKEND", "local")

REPO = Path(__file__).resolve().parents[1]
PROGRAMS = REPO / "tests" / "programs"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def launch(args: list[str], out_dir: Path | None, np: int = 2, launcher: str = "gloo",
           timeout: float = 180, env: dict | None = None,
           launcher_args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run ``tests/programs/<args[0]>`` (a path relative to it) on ``np`` ranks and return the
    finished process.

    launcher: "gloo" or "mpi" (horovodrun), "quiet-gloo" (horovodrun --gloo through
    ``python -m fe_dist.launch``), "mpirun" (Open MPI's own launcher), or "python" (one plain
    process); ``launcher_args`` replace horovodrun's ``-H localhost:N``. Every run
    has a time limit: a hung collective fails the test instead of
    hanging the suite.
    """
    program = [sys.executable, str(PROGRAMS / args[0]), *args[1:]]
    if out_dir is not None:  # the programs in tests/programs write their reports there
        program += ["--out", str(out_dir)]
    if launcher in ("gloo", "mpi", "quiet-gloo"):
        hosts = ["-H", f"localhost:{np}"] if launcher_args is None else launcher_args
        runner = ([sys.executable, "-m", "fe_dist.launch"] if launcher.startswith("quiet-")
                  else [_tool("horovodrun")])
        cmd = [*runner, "-np", str(np), *hosts, f"--{launcher.removeprefix('quiet-')}",
               *program]
    elif launcher == "mpirun":
        cmd = [_tool("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", str(np),
               "-x", "PATH", "-x", "PYTHONPATH", "-x", "TF_CPP_MIN_LOG_LEVEL",
               "-x", "FE_DIST_THREADS",
               *(["-x", "FE_DIST_BACKEND"] if "FE_DIST_BACKEND" in (env or {}) else []),
               *program]
    else:
        cmd = program
    run_env = {**os.environ, "FE_DIST_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    # The launcher decides the backend, unless `env` says otherwise (a HOROVOD_* setting
    # inherited from the caller's shell would steer fe_dist's automatic choice).
    for key in [k for k in run_env if k == "FE_DIST_BACKEND" or k.startswith("HOROVOD_")]:
        del run_env[key]
    run_env.update(env or {})
    run_env["PYTHONPATH"] = str(REPO)
    try:
        return subprocess.run(cmd, env=run_env, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{' '.join(cmd)} did not finish within {timeout} s (a hang).\n"
                    f"stdout:\n{err.stdout}\nstderr:\n{err.stderr}")


def discovery(tmp_path: Path, hosts: str) -> tuple[Path, Path]:
    """(hosts file holding ``hosts``, an executable discovery script that prints it) for
    Horovod's elastic ``--host-discovery-script``; tests rewrite the file to add or drop hosts."""
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text(hosts)
    script = tmp_path / "discover.sh"
    script.write_text(f"#!/bin/sh\ncat {hosts_file}\n")
    script.chmod(0o755)
    return hosts_file, script


def read_reports(out_dir: Path, np: int) -> list[dict]:
    """Each rank's JSON report, in rank order."""
    reports = []
    for rank in range(np):
        path = out_dir / f"rank{rank}.json"
        assert path.exists(), f"rank {rank} wrote no report in {out_dir}"
        reports.append(json.loads(path.read_text()))
    return reports

