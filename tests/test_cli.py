"""Command-line entry points: user errors are a few lines and status 2, no traceback, and are
found before any data is generated or any directory written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import cpu_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, devices=None, env_extra=None):
  env = cpu_env(devices, **(env_extra or {}))
  env.pop("AMFI_JAX_VERBOSE", None) if not env_extra else None
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120)


def _assert_user_error(proc, *named):
  assert proc.returncode == 2, proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr
  error = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
  assert len(error) == 1, proc.stderr
  for text in named:
    assert text in proc.stderr, (text, proc.stderr)


@pytest.mark.parametrize("flags,named", [
    (["--config=configs/fusion.py:demo", "--config.train.rgb.nonexistent=3"],
     ["--config.train.rgb.nonexistent", "no field 'nonexistent'"]),
    (["--config=configs/nope.py"], ["--config", "configs/nope.py"]),
    (["--config=configs/fusion.py:demo", "--config.train.rgb.learning_rate=abc"],
     ["--config.train.rgb.learning_rate=abc"]),
    (["--config=configs/fusion.py:demo", "--config.train.fusion.learning_rate=-1"],
     ["config.train.fusion.learning_rate must be a finite number > 0"]),
    (["--config=configs/fusion.py:demo", "--config.train.skeleton.num_epochs=0"],
     ["config.train.skeleton: set num_epochs > 0 or num_steps > 0"]),
    (["--config=configs/fusion.py"],
     ["config.model.num_classes=60", "config.data.embedded.num_classes=8", "demo"]),
    (["--config=configs/fusion.py:demo", "--config.train.fusion.batch_size=3"],
     ["config.train.fusion.batch_size=3 must be divisible"]),
])
def test_main_reports_config_errors_before_any_work(tmp_path, flags, named):
  workdir = tmp_path / "run"
  proc = _run("amfi_jax.main", f"--workdir={workdir}", *flags, devices=2)
  _assert_user_error(proc, *named)
  assert not workdir.exists()  # nothing generated, nothing written


def test_workdir_that_is_a_file_is_a_user_error(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  proc = _run("amfi_jax.main", "--config=configs/fusion.py:demo", f"--workdir={path}")
  _assert_user_error(proc, f"--workdir={path} is a file")


def test_verbose_shows_the_traceback(tmp_path):
  proc = _run("amfi_jax.main", "--config=configs/fusion.py:demo", f"--workdir={tmp_path}/w",
              "--config.train.rgb.learning_rate=-1", "--verbose")
  assert proc.returncode != 0 and "Traceback" in proc.stderr
  proc = _run("amfi_jax.main", "--config=configs/fusion.py:demo", f"--workdir={tmp_path}/w",
              "--config.train.rgb.learning_rate=-1", env_extra={"AMFI_JAX_VERBOSE": "1"})
  assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_evaluate_on_a_directory_without_a_run(tmp_path):
  proc = _run("amfi_jax.evaluate", f"--workdir={tmp_path}")
  _assert_user_error(proc, "run.json not found")


def test_predict_refuses_a_skeleton_and_a_video_of_different_samples(tmp_path):
  proc = _run("amfi_jax.predict", f"--workdir={tmp_path}",
              "--skeleton=S001C001P001R001A011.skeleton", "--video=S001C001P001R001A012_rgb.avi")
  _assert_user_error(proc, "S001C001P001R001A011", "S001C001P001R001A012", "--allow_mismatch")


@pytest.mark.parametrize("skeleton, video, named", [
    ("x.skeleton", "x_rgb.avi", ["--skeleton=x.skeleton: not a sample name of NTU", "UTD-MHAD"]),
    ("S001C001P001R001A011.skeleton", "a1_s1_t1_depth.mat",
     ["--video=a1_s1_t1_depth.mat: not an NTU sample name"]),
    ("a1_s1_t1_skeleton.mat", "a1_s1_t2_depth.mat",
     ["--skeleton is sample a1_s1_t1 but --video is sample a1_s1_t2"]),
])
def test_predict_refuses_files_of_no_or_different_samples(tmp_path, skeleton, video, named):
  proc = _run("amfi_jax.predict", f"--workdir={tmp_path}", f"--skeleton={skeleton}",
              f"--video={video}")
  _assert_user_error(proc, *named, "--allow_mismatch")


@pytest.mark.parametrize("name", ["weights.npz", "weights.pth"])
def test_convert_names_an_unreadable_weight_file(tmp_path, name):
  path = tmp_path / name
  path.write_text("not weights\n")
  proc = _run("amfi_jax.convert", "--source=torchvision_r3d18", f"--input={path}",
              f"--output={tmp_path / 'out'}")
  _assert_user_error(proc, str(path), "is not a readable")
  assert not (tmp_path / "out").exists()


def test_convert_refuses_an_output_that_is_not_new(tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("x")
  proc = _run("amfi_jax.convert", "--source=torchvision_r3d18", f"--input={tmp_path}/w.npz",
              f"--output={tmp_path / 'out'}")
  _assert_user_error(proc, f"--output={tmp_path / 'out'} is a non-empty directory")
  assert os.listdir(tmp_path / "out") == ["keep.txt"]


_QUICK_EXIT_SCRIPT = """
import atexit, sys, threading, time
from amfi_jax import cli

def main(argv):
  atexit.register(lambda: open(sys.argv[1] + ".atexit", "w").close())
  sys.stdout.write("x" * 100000)  # buffered: a pipe
  if sys.argv[2] == "thread":  # a non-daemon thread still working when main returns
    threading.Thread(target=lambda: (time.sleep(0.5), open(sys.argv[1] + ".thread", "w").close())
                     ).start()
  return int(sys.argv[3])

cli.run(main)
"""


@pytest.mark.parametrize("thread", ["none", "thread"])
@pytest.mark.parametrize("status", [0, 3])
def test_commands_exit_with_their_status_output_and_exit_handlers(tmp_path, thread, status):
  """`cli.run` skips the interpreter's teardown once main returns: the status, buffered output,
  the exit handlers and a non-daemon thread's work all survive it."""
  stem = str(tmp_path / "run")
  proc = subprocess.run([sys.executable, "-c", _QUICK_EXIT_SCRIPT, stem, thread, str(status)],
                        cwd=REPO, env=cpu_env(), capture_output=True, text=True, timeout=120)
  assert proc.returncode == status, proc.stderr
  assert proc.stdout == "x" * 100000
  assert os.path.exists(stem + ".atexit")
  assert os.path.exists(stem + ".thread") == (thread == "thread")
