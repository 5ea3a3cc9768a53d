"""Real multi-process jobs on this machine: 2 processes × 2 CPU devices against 1 × 4, a
process killed mid-run (the job stops with an error within the heartbeat timeout; a restart on
another process count resumes from the last checkpoint), and SIGTERM (one agreed save)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from amfi_jax.models import build_model
from amfi_jax.weights import save_stream
from tests.conftest import cpu_env
from tests.training.conftest import REPO, cli_overrides, tiny_config
from tests.training.test_resume_and_devices import _finish, _train_losses, _wait_for_checkpoint

# Runs of `amfi_jax.main` in subprocesses: started first (see tests/conftest.py).
pytestmark = pytest.mark.slow

HEARTBEAT_S = 5


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  return cpu_env(PYTHON=sys.executable)  # no device count: devices come from --cpu_devices


def _popen(cmd):
  return subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def streams(tiny_dataset, tmp_path_factory):
  """Freshly initialised stream weights for the fusion stage's `config.init_from`."""
  config = tiny_config("fusion", tiny_dataset)
  root = tmp_path_factory.mktemp("streams")
  paths = {}
  for stream in ("rgb", "skeleton"):
    paths[stream] = save_stream(str(root / stream), build_model(config.model, stream, seed=1),
                                info={"stage": stream})
  return paths


def _fusion_flags(workdir, dataset, streams, steps):
  return ["--config=configs/fusion.py:demo", f"--workdir={workdir}",
          "--config.stages=('fusion',)", f"--config.init_from.rgb={streams['rgb']}",
          f"--config.init_from.skeleton={streams['skeleton']}",
          *cli_overrides(dataset, "fusion", steps=steps)]


def test_two_processes_train_like_one(tiny_dataset, streams, tmp_path):
  """The fusion stage on 2 processes × 2 devices and on 1 process × 4 devices: same losses."""
  two, one = str(tmp_path / "two"), str(tmp_path / "one")
  launcher = _popen([os.path.join(REPO, "launch", "local.sh"), "--devices_per_process=2", "2",
                     "--", *_fusion_flags(two, tiny_dataset, streams, steps=3)])
  out = _finish(launcher, timeout=600)
  assert "[1] " in out and "JAX process 1 of 2: 2 local / 4 global cpu devices" in out
  _finish(_popen([sys.executable, "-m", "amfi_jax.main", "--cpu_devices=4",
                  *_fusion_flags(one, tiny_dataset, streams, steps=3)]), timeout=600)
  # One writer: each step is logged once although two processes trained.
  losses_two, losses_one = _train_losses(two, "fusion"), _train_losses(one, "fusion")
  assert sorted(losses_two) == sorted(losses_one) == [1, 2, 3]
  np.testing.assert_allclose([losses_two[s] for s in (1, 2, 3)],
                             [losses_one[s] for s in (1, 2, 3)], rtol=1e-5)
  for workdir in (two, one):
    assert os.path.exists(os.path.join(workdir, "fusion", "result.json"))


def test_killed_process_stops_the_job_and_a_restart_resumes(tiny_dataset, tmp_path):
  workdir = str(tmp_path)
  flags = ["--config=configs/skeleton.py:demo", f"--workdir={workdir}",
           f"--heartbeat_timeout={HEARTBEAT_S}", "--cpu_devices=2",
           f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=2",
           *cli_overrides(tiny_dataset, "skeleton", steps=300)]
  procs = [_popen([sys.executable, "-m", "amfi_jax.main", *flags, f"--process_id={i}"])
           for i in range(2)]
  saved = _wait_for_checkpoint(procs[0], workdir, min_step=6)
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.time()
  out, _ = procs[0].communicate(timeout=HEARTBEAT_S + 120)
  procs[1].wait()
  assert procs[0].returncode != 0
  # The survivor learns of it from the coordination service, not by hanging in a collective.
  assert time.time() - killed_at < HEARTBEAT_S + 60
  # Its runtime log says why; on a failure show those lines, not the tail of the thread dump
  # that follows them.
  errors = "\n".join(line for line in out.splitlines() if re.match(r"[EF]\d{4} ", line))
  assert "stopped sending heartbeats" in errors, errors or out[-3000:]
  assert "another task died" in errors, errors or out[-3000:]
  assert not os.path.exists(os.path.join(workdir, "skeleton", "result.json"))

  # Restart on one process with 4 devices: resumes, and the data position follows the step.
  # (A shorter schedule than the killed job's is a config change the restart must allow.)
  restart = _finish(_popen([sys.executable, "-m", "amfi_jax.main", "--cpu_devices=4",
                            "--allow_config_change", *flags[:2],
                            *cli_overrides(tiny_dataset, "skeleton", steps=saved + 12)]),
                    timeout=600)
  (resumed,) = map(int, re.findall(r"resuming from step (\d+)", restart))
  assert resumed >= saved
  assert f"continuing the input at global batch {resumed}" in restart
  assert os.path.exists(os.path.join(workdir, "skeleton", "result.json"))
  assert max(_train_losses(workdir)) == saved + 12


def test_sigterm_to_the_launcher_saves_one_agreed_step_and_exits_cleanly(tiny_dataset,
                                                                         tmp_path):
  """local.sh passes SIGTERM on; the processes agree on a step, both save it and exit 0."""
  workdir = str(tmp_path)
  launcher = _popen([os.path.join(REPO, "launch", "local.sh"), "--devices_per_process=2", "2",
                     "--", "--config=configs/skeleton.py:demo", f"--workdir={workdir}",
                     *cli_overrides(tiny_dataset, "skeleton", steps=300)])
  _wait_for_checkpoint(launcher, workdir, min_step=3)
  launcher.send_signal(signal.SIGTERM)
  out, _ = launcher.communicate(timeout=120)
  assert launcher.returncode == 0, out[-3000:]
  saved = {int(m.group(2)) for m in re.finditer(r"\[(\d)\] SIGTERM: stage skeleton saved step "
                                                 r"(\d+)", out)}
  assert len(saved) == 1, out[-3000:]  # the same step on both processes
  assert "[0] SIGTERM" in out and "[1] SIGTERM" in out
  assert os.path.isdir(os.path.join(workdir, "skeleton", "checkpoints", str(saved.pop())))
