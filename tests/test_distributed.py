"""Multi-process settings and the launch scripts' dry runs (no processes are connected here:
tests/training/test_multiprocess.py runs real multi-process jobs)."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from amfi_jax import distributed

from tests.conftest import cpu_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
MAIN_FLAGS = ["--config=configs/fusion.py", "--workdir=/shared/my run"]


def test_flags_win_over_the_environment():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
         "JAX_PROCESS_ID": "3"}
  s = distributed.settings_from("auto", None, None, 2, environ=env)
  assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 2)


@pytest.mark.parametrize("kwargs, env, message", [
    (dict(mode="sometimes"), {}, "--distributed must be one of"),
    (dict(num_processes=2, process_id=2), {}, "--process_id=2 must be below --num_processes=2"),
    (dict(num_processes=0), {}, "--num_processes must be >= 1"),
    (dict(timeout_s=0), {}, "--distributed_timeout must be at least 1 second"),
    (dict(cpu_devices=0), {}, "--cpu_devices must be >= 1"),
    (dict(), {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not an integer"),
    (dict(coordinator_address="10.0.0.1"), {}, "--coordinator_address .* must be host:port"),
])
def test_bad_settings_name_the_flag(kwargs, env, message):
  with pytest.raises(distributed.DistributedError, match=message):
    distributed.settings_from(environ=env, **kwargs)


def test_incomplete_explicit_settings_say_what_is_missing():
  settings = distributed.settings_from("auto", "127.0.0.1:1234", 2, None, environ={})
  with pytest.raises(distributed.DistributedError,
                     match=r"missing --process_id \(or JAX_PROCESS_ID\)"):
    distributed.initialize(settings)


def test_single_process_needs_nothing():
  assert not distributed.initialize(distributed.settings_from("auto", environ={}))
  assert not distributed.initialize(distributed.settings_from("off", "x:1", 2, 0, environ={}))
  # One explicit process is a plain single-process run.
  assert not distributed.initialize(distributed.settings_from("on", "x:1", 1, 0, environ={}))


def test_distributed_on_without_a_cluster_is_an_error(monkeypatch):
  for var in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(var, raising=False)
  with pytest.raises(distributed.DistributedError, match="no cluster environment"):
    distributed.initialize(distributed.settings_from("on", environ={}))


def test_slurm_job_steps_are_detected(monkeypatch):
  for var, value in {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[003-004]",
                     "SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}.items():
    monkeypatch.setenv(var, value)
  assert distributed.detected_cluster() == "SlurmCluster"
  monkeypatch.setenv("SLURM_NTASKS", "1")  # an interactive single-task allocation
  assert distributed.detected_cluster() is None


def test_a_missing_peer_fails_fast_with_a_clear_message():
  """Process 1 of 2 whose coordinator never comes up: an error naming the settings, in time."""
  script = textwrap.dedent("""
      import sys
      from amfi_jax import distributed
      try:
        distributed.initialize(distributed.settings_from(
            "auto", "127.0.0.1:1", 2, 1, timeout_s=3, environ={}))
      except distributed.DistributedError as e:
        print("ERROR", e)
        sys.exit(1)
      """)
  start = time.time()
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env=cpu_env())
  assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
  assert "the coordinator 127.0.0.1:1 (process 0) did not answer within 3 s" in (
      proc.stdout)
  assert time.time() - start < 60


# --- launch scripts -------------------------------------------------------------------------


def _run(cmd, **kwargs):
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, **kwargs)


def test_local_dry_run_prints_one_command_per_process():
  proc = _run([os.path.join(LAUNCH, "local.sh"), "--dry_run", "--devices_per_process=2",
               "--port=7777", "3", "--", *MAIN_FLAGS])
  assert proc.returncode == 0, proc.stderr
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    argv = shlex.split(line)
    assert argv[:2] == ["env", "JAX_PLATFORMS=cpu"]
    assert argv[3:5] == ["-m", "amfi_jax.main"]
    assert argv[5:] == ["--coordinator_address=127.0.0.1:7777", "--num_processes=3",
                        f"--process_id={i}", "--cpu_devices=2", *MAIN_FLAGS]


@pytest.mark.parametrize("args, message", [
    (["0", "--"], "N must be a positive integer"),
    (["--devices_per_process=x", "2", "--"], "--devices_per_process must be a positive integer"),
    (["2", "--config=x"], "expected N -- <main flags>"),
])
def test_local_rejects_bad_arguments(args, message):
  proc = _run([os.path.join(LAUNCH, "local.sh"), *args, *MAIN_FLAGS])
  assert proc.returncode == 2 and message in proc.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python: process 1 fails after a second, the others run until stopped.
[[ "$1" == "-c" ]] && exec python3 "$@"
for a in "$@"; do case "$a" in --process_id=*) id="${a#*=}";; esac; done
echo "started $id"
if [[ "$id" == 1 ]]; then sleep 1; echo "failing $id"; exit 3; fi
sleep 300 &
trap 'echo "stopped $id"; kill $!; exit 0' TERM
wait
"""


def test_local_stops_every_process_when_one_fails(tmp_path):
  fake = tmp_path / "python"
  fake.write_text(FAKE_PYTHON)
  fake.chmod(0o755)
  start = time.time()
  proc = _run([os.path.join(LAUNCH, "local.sh"), "3", "--", *MAIN_FLAGS],
              env=dict(os.environ, PYTHON=str(fake)))
  assert time.time() - start < 30
  assert proc.returncode == 3
  assert "process 1 exited with status 3; stopping the other processes" in proc.stderr
  for i in (0, 2):
    assert f"[{i}] stopped {i}" in proc.stdout
  assert "[1] failing 1" in proc.stdout


def test_slurm_dry_run():
  proc = _run(["bash", os.path.join(LAUNCH, "slurm.sbatch"), *MAIN_FLAGS],
              env=dict(os.environ, DRY_RUN="1"))
  assert proc.returncode == 0, proc.stderr
  argv = shlex.split(proc.stdout)
  assert argv[:2] == ["srun", "--kill-on-bad-exit=1"]
  assert argv[3:] == ["-m", "amfi_jax.main", "--distributed=on", *MAIN_FLAGS]
  text = open(os.path.join(LAUNCH, "slurm.sbatch")).read()
  assert "#SBATCH --signal=TERM@" in text and "#SBATCH --gpus-per-node=" in text


def test_tpu_vm_dry_run():
  proc = _run([os.path.join(LAUNCH, "tpu_vm.sh"), "--dry_run", "--tpu=amfi-v4-32",
               "--zone=us-central2-b", "--project=p1", "--", *MAIN_FLAGS])
  assert proc.returncode == 0, proc.stderr
  argv = shlex.split(proc.stdout)
  assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "amfi-v4-32"]
  assert "--zone=us-central2-b" in argv and "--worker=all" in argv and "--project=p1" in argv
  (remote,) = [a[len("--command="):] for a in argv if a.startswith("--command=")]
  cd, run = remote.split(" && ")
  assert cd == "cd ~/amfi_jax"
  assert shlex.split(run) == ["python3", "-m", "amfi_jax.main", "--distributed=on", *MAIN_FLAGS]
  missing = _run([os.path.join(LAUNCH, "tpu_vm.sh"), "--dry_run", "--zone=z", "--", "x"])
  assert missing.returncode == 2 and "--tpu=NAME is required" in missing.stderr


def test_gke_dry_run_renders_a_valid_job():
  proc = _run([os.path.join(LAUNCH, "gke", "submit.sh"), "--dry_run", "--image=reg/amfi:1",
               "--processes=4", "--gpus_per_process=8", "--name=amfi-x", "--", *MAIN_FLAGS])
  assert proc.returncode == 0, proc.stderr
  service, job = yaml.safe_load_all(proc.stdout)
  assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
  assert job["kind"] == "Job" and job["spec"]["completionMode"] == "Indexed"
  assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
  pod = job["spec"]["template"]["spec"]
  assert pod["subdomain"] == "amfi-x" == service["metadata"]["name"]
  (container,) = pod["containers"]
  assert container["image"] == "reg/amfi:1"
  assert container["command"] + container["args"] == [
      "python3", "-m", "amfi_jax.main", "--distributed=on", *MAIN_FLAGS]
  env = {e["name"]: e for e in container["env"]}
  assert env["JAX_COORDINATOR_ADDRESS"]["value"] == "amfi-x-0.amfi-x:1234"
  assert env["JAX_NUM_PROCESSES"]["value"] == "4"
  assert "job-completion-index" in env["JAX_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
  assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
  bad = _run([os.path.join(LAUNCH, "gke", "submit.sh"), "--dry_run", "--image=i",
              "--processes=2", "--name=Bad_Name", "--", "x"])
  assert bad.returncode == 2 and "--name must be a DNS label" in bad.stderr


def test_a_coordinator_whose_peers_never_come_says_so():
  """Process 0 of 2 alone: the runtime aborts after the timeout; our message comes first."""
  script = textwrap.dedent(f"""
      from amfi_jax import distributed
      distributed.initialize(distributed.settings_from(
          "auto", "127.0.0.1:{_free_port()}", 2, 0, timeout_s=2, environ={{}}))
      """)
  start = time.time()
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                        timeout=120, env=cpu_env())
  assert proc.returncode != 0
  assert ("error: not all 2 processes connected (coordinator 127.0.0.1:" in proc.stderr
          and "within --distributed_timeout=2 s; this is process 0" in proc.stderr), (
              proc.stderr[-3000:])
  assert time.time() - start < 60


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_barrier_waits_longer_than_device_collectives_would():
  """Process 0 arrives 35 s late (as when it generates the embedded dataset): a device
  collective would give up after 30 s; the barrier waits."""
  port = _free_port()
  script = textwrap.dedent(f"""
      import sys, time
      from amfi_jax import distributed
      pid = int(sys.argv[1])
      distributed.initialize(distributed.settings_from(
          "auto", "127.0.0.1:{port}", 2, pid, timeout_s=60, environ={{}}))
      if pid == 0:
        time.sleep(35)
      distributed.barrier("late process 0")
      print("through", pid)
      """)
  env = cpu_env()
  procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=180)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0 and f"through {i}" in out, out[-3000:]
