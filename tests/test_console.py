"""A quiet console: no TensorFlow C++ start-up lines from fe_dist programs, no progress bar under
mpirun/horovodrun unless asked for."""

import os
import re
import subprocess
import sys

import pytest

import fe_dist as fe
from conftest import PROGRAMS, REPO, launch, read_reports
from fe_dist import console
from fe_dist.progress import Progress

# TensorFlow 2.21's start-up lines on a CPU machine (see fe_dist/console.py).
NOISE = re.compile(r"cuInit|oneDNN|I0000|E0000|absl::InitializeLog|cudart_stub|"
                   r"cpu_feature_guard")
LAUNCHER_VARIABLES = ("HOROVOD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


def test_a_run_on_one_process_prints_no_tensorflow_start_up_lines(tmp_path):
    result = launch(["helper_models.py"], tmp_path, launcher="python", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "epoch 1: train student" in output
    assert not NOISE.search(output), output


def test_tensorflow_imported_first_still_gives_no_cuinit_error():
    # The import-time lines are out before fe_dist runs (README: what cannot be suppressed);
    # the device listing's ERROR line is fe_dist's to filter.
    code = "import tensorflow; import fe_dist; fe_dist.distributed.get_context(); print('ok')"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FE_DIST_BACKEND": "local"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
    assert not re.search(r"cuInit|E0000", result.stderr), result.stderr


_LINES = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
          "STDERR\n"
          "I0000 00:00:1.5  13471 port.cc:153] oneDNN custom operations are on. You may see\n"
          "E0000 00:00:1.7  13471 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA\n"
          "E0000 00:00:1.8  13471 some_op.cc:12] a real error of the user's program\n")


@pytest.mark.parametrize("env, kept", [({}, 1), ({"FE_DIST_QUIET": "0"}, 4),
                                       ({"TF_CPP_MIN_LOG_LEVEL": "0"}, 4),
                                       ({"TF_CPP_MIN_LOG_LEVEL": "0", "FE_DIST_QUIET": "1"}, 1)])
def test_only_known_start_up_lines_are_filtered_and_a_setting_keeps_them(
        monkeypatch, capfd, env, kept):
    monkeypatch.setattr(console, "has_nvidia_driver", lambda: False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capfd.readouterr()
    with console.quiet_native_stderr():
        os.write(2, _LINES.encode())
    err = capfd.readouterr().err
    assert "a real error of the user's program" in err
    assert len(err.splitlines()) == kept, err


def test_a_failed_cuinit_is_kept_where_an_nvidia_driver_is_installed(monkeypatch, capfd):
    monkeypatch.setattr(console, "has_nvidia_driver", lambda: True)
    capfd.readouterr()
    with console.quiet_native_stderr():
        os.write(2, _LINES.encode())
    assert "failed call to cuInit" in capfd.readouterr().err


class _Terminal:
    def isatty(self):
        return True

    def write(self, text):
        pass

    def flush(self):
        pass


@pytest.mark.parametrize("variable", LAUNCHER_VARIABLES)
def test_no_progress_bar_under_a_launcher_even_on_a_terminal(monkeypatch, variable):
    for key in (*LAUNCHER_VARIABLES, "FE_DIST_PROGRESS"):
        monkeypatch.delenv(key, raising=False)
    assert Progress(_Terminal()).enabled  # a plain run in a terminal draws it
    monkeypatch.setenv(variable, "0")
    assert not Progress(_Terminal()).enabled
    monkeypatch.setenv("FE_DIST_PROGRESS", "1")
    assert Progress(_Terminal()).enabled
    monkeypatch.setenv("FE_DIST_PROGRESS", "0")
    monkeypatch.delenv(variable)
    assert not Progress(_Terminal()).enabled


def test_the_estimator_argument_decides_the_progress_bar(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    from test_errors import estimator

    est = estimator()
    assert not est._progress.enabled
    est = fe.Estimator(pipeline=est.pipeline, network=est.network, epochs=1, progress=True)
    assert est._progress.enabled


# A pip console script: a file run by path (so multiprocessing's spawn children would re-run it).
_CONSOLE_SCRIPT = """import sys
from fe_dist.distributed.horovodrun import main
if __name__ == "__main__":
    sys.exit(main())
"""


@pytest.mark.multirank
def test_the_quiet_launcher_is_horovodrun_without_its_own_tensorflow_lines(tmp_path):
    # Plain horovodrun: its build checks import TensorFlow in a child of its own process, which
    # prints the start-up lines without a [rank] prefix; a failing rank makes it exit with 1.
    plain = launch(["hello.py", "--exit-code", "3"], tmp_path / "plain", launcher="gloo",
                   timeout=120)
    plain_output = plain.stdout + plain.stderr
    assert plain.returncode == 1, plain_output[-3000:]
    assert re.search(r"^WARNING: All log messages before absl", plain_output, re.M), plain_output

    # python -m fe_dist.launch, same arguments: both ranks run, no start-up line anywhere.
    out = tmp_path / "quiet"
    out.mkdir()
    quiet = launch(["hello.py"], out, launcher="quiet-gloo", timeout=120)
    output = quiet.stdout + quiet.stderr
    assert quiet.returncode == 0, output[-3000:]
    assert [r["ranks"] for r in read_reports(out, 2)] == [[0, 1], [0, 1]]
    for rank in (0, 1):
        assert f"[{rank}]<stdout>:hello from rank {rank} of 2" in quiet.stdout, output
    assert not NOISE.search(output), output

    # The console script (fe-horovodrun): horovodrun's exit status and error output for a
    # failing rank, no start-up line, and the spawn children that start the ranks do not
    # import fe_dist again (-X importtime reaches them: only the launcher's own import shows).
    script = tmp_path / "fe-horovodrun"
    script.write_text(_CONSOLE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOROVOD_")}
    env.update(PYTHONPATH=str(REPO), OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("FE_DIST_BACKEND", None)
    failing = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "-np", "2", "-H", "localhost:2",
         "--gloo", sys.executable, str(PROGRAMS / "hello.py"), "--out", str(tmp_path),
         "--exit-code", "3"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    output = failing.stdout + failing.stderr
    assert failing.returncode == plain.returncode, output[-3000:]
    assert re.search(r"^Process [01] exit with status code 3\.$", output, re.M), output[-3000:]
    lines = [line for line in output.splitlines() if not line.startswith("import time:")]
    assert not NOISE.search("\n".join(lines)), output
    assert len(re.findall(r"\|\s+fe_dist\.console$", failing.stderr, re.M)) == 1, failing.stderr
