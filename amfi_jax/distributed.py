"""Starting JAX's multi-process runtime, and the few cross-process agreements the loop needs.

One process per host (or per GPU under SLURM) runs the same program; `initialize` connects them
before any JAX computation. Where the settings come from, first match wins:

  1. explicit: `--coordinator_address`, `--num_processes`, `--process_id` (flags), else the
     environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID;
  2. a cluster JAX recognises by itself (SLURM with more than one task, Cloud TPU VM slices,
     Open MPI): `jax.distributed.initialize()` with no addresses;
  3. otherwise a single process, nothing to connect.

`mode='off'` skips it all; `mode='on'` insists (a missing setting is an error, not a silent
single-process run on every host).

A missing peer makes `jax.distributed.initialize` fail after `timeout_s`; a peer that dies
later is noticed by the coordination service within `heartbeat_timeout_s`, which then stops
every process with an error, so no job hangs in a collective.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from absl import logging

MODES = ("auto", "on", "off")
ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}


class DistributedError(RuntimeError):
  """The multi-process settings are incomplete or the peers could not be reached."""


@dataclasses.dataclass(frozen=True)
class Settings:
  mode: str = "auto"
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  timeout_s: int = 300
  heartbeat_timeout_s: int = 100
  cpu_devices: int | None = None  # CPU devices per process (multi-process tests, laptops)


def settings_from(mode: str = "auto", coordinator_address: str | None = None,
                  num_processes: int | None = None, process_id: int | None = None, *,
                  timeout_s: int = 300, heartbeat_timeout_s: int = 100,
                  cpu_devices: int | None = None, environ=None) -> Settings:
  """Settings from flags, completed by the environment; checks what can be checked locally."""
  environ = os.environ if environ is None else environ
  if mode not in MODES:
    raise DistributedError(f"--distributed must be one of {MODES}, got {mode!r}")
  given = {"coordinator_address": coordinator_address, "num_processes": num_processes,
           "process_id": process_id}
  for key, var in ENV.items():
    if given[key] is None and environ.get(var, "") != "":
      value = environ[var]
      if key != "coordinator_address":
        try:
          value = int(value)
        except ValueError:
          raise DistributedError(f"environment variable {var}={value!r} is not an integer"
                                 ) from None
      given[key] = value
  address = given["coordinator_address"]
  if address is not None and not _split_address(address):
    raise DistributedError(f"--coordinator_address (or {ENV['coordinator_address']}) must be "
                           f"host:port, got {address!r}")
  for key in ("num_processes", "process_id"):
    if given[key] is not None and given[key] < 0:
      raise DistributedError(f"--{key} must be >= 0, got {given[key]}")
  if given["num_processes"] is not None and given["num_processes"] < 1:
    raise DistributedError(f"--num_processes must be >= 1, got {given['num_processes']}")
  if (given["num_processes"] is not None and given["process_id"] is not None
      and given["process_id"] >= given["num_processes"]):
    raise DistributedError(f"--process_id={given['process_id']} must be below "
                           f"--num_processes={given['num_processes']}")
  for name, value in (("distributed_timeout", timeout_s),
                      ("heartbeat_timeout", heartbeat_timeout_s)):
    if value < 1:
      raise DistributedError(f"--{name} must be at least 1 second, got {value}")
  if cpu_devices is not None and cpu_devices < 1:
    raise DistributedError(f"--cpu_devices must be >= 1, got {cpu_devices}")
  return Settings(mode=mode, timeout_s=timeout_s, heartbeat_timeout_s=heartbeat_timeout_s,
                  cpu_devices=cpu_devices, **given)


def define_flags():
  """Defines the command-line flags of the multi-process settings (for an entry point's module
  scope); returns a function that reads them into `Settings`."""
  from absl import flags
  mode = flags.DEFINE_enum("distributed", "auto", MODES,
                           "auto: multi-process when settings or a cluster are found; on: "
                           "require it; off: single process.")
  coordinator = flags.DEFINE_string("coordinator_address", None,
                                    "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS).")
  num_processes = flags.DEFINE_integer("num_processes", None,
                                       "Processes in the job (else $JAX_NUM_PROCESSES).")
  process_id = flags.DEFINE_integer("process_id", None,
                                    "This process, 0-based (else $JAX_PROCESS_ID).")
  timeout = flags.DEFINE_integer("distributed_timeout", 300,
                                 "Seconds to wait for all processes to connect.")
  heartbeat = flags.DEFINE_integer("heartbeat_timeout", 100,
                                   "Seconds after which a silent process counts as dead and the "
                                   "job stops.")
  cpu_devices = flags.DEFINE_integer("cpu_devices", None,
                                     "CPU devices per process (sharding on one machine).")

  def read() -> Settings:
    return settings_from(mode.value, coordinator.value, num_processes.value, process_id.value,
                         timeout_s=timeout.value, heartbeat_timeout_s=heartbeat.value,
                         cpu_devices=cpu_devices.value)

  return read


def _explicit(settings: Settings) -> bool:
  return any(getattr(settings, k) is not None for k in ENV)


def detected_cluster() -> str | None:
  """The cluster environment JAX would configure itself from, if any (and if multi-process)."""
  try:  # JAX's detectors; private, so a failure means "none" rather than a crash.
    from jax._src import clusters
    envs = [env for env in clusters.ClusterEnv._cluster_types  # pylint: disable=protected-access
            if not env.opt_in_only_method]
  except (ImportError, AttributeError):
    return None
  for env in envs:
    try:
      if env.is_env_present() and env.get_process_count() > 1:
        return env.__name__
    except Exception:  # pylint: disable=broad-except  (a half-configured environment)
      continue
  return None


def initialize(settings: Settings) -> bool:
  """Connects this process to its peers if the settings ask for it; True if multi-process.

  Must run before anything touches a JAX device.
  """
  if settings.cpu_devices is not None:
    jax.config.update("jax_num_cpu_devices", settings.cpu_devices)
  if settings.mode == "off":
    return False
  kwargs = dict(initialization_timeout=settings.timeout_s,
                heartbeat_timeout_seconds=settings.heartbeat_timeout_s)
  if _explicit(settings):
    missing = [f"--{k} (or {v})" for k, v in ENV.items() if getattr(settings, k) is None]
    if missing:
      raise DistributedError("multi-process settings are incomplete: missing "
                             + ", ".join(missing))
    if settings.num_processes == 1:
      return False
    if settings.process_id != 0:
      _wait_for_coordinator(settings.coordinator_address, settings.timeout_s)
    kwargs.update(coordinator_address=settings.coordinator_address,
                  num_processes=settings.num_processes, process_id=settings.process_id)
    where = f"coordinator {settings.coordinator_address}"
  else:
    cluster = detected_cluster()
    if cluster is None:
      if settings.mode == "on":
        raise DistributedError(
            "--distributed=on but no cluster environment (SLURM, Cloud TPU, Open MPI) was "
            "detected; give --coordinator_address, --num_processes and --process_id")
      return False
    where = f"{cluster} auto-detection"
  logging.info("Waiting up to %d s for all processes to connect (%s)", settings.timeout_s, where)
  # If a peer never connects, the runtime aborts this process after the timeout (it does not
  # raise) with a message about a task that "died"; say first what it means.
  explain = threading.Timer(settings.timeout_s, _explain_timeout, (settings, where))
  explain.daemon = True
  explain.start()
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # the runtime raises XlaRuntimeError/RuntimeError/ValueError
    raise DistributedError(
        f"could not start the multi-process runtime via {where} within {settings.timeout_s} s "
        f"(process {settings.process_id} of {settings.num_processes}): {e}. Check that every "
        "process was started with the same coordinator address and process count, and that "
        "the coordinator's port is reachable") from e
  finally:
    explain.cancel()
  return True


def _explain_timeout(settings: Settings, where: str) -> None:
  count = settings.num_processes if settings.num_processes is not None else "the"
  process = settings.process_id if settings.process_id is not None else "?"
  print(f"error: not all {count} processes connected ({where}) within "
        f"--distributed_timeout={settings.timeout_s} s; this is process {process}. Start the "
        "missing processes with the same --coordinator_address and --num_processes (or raise "
        "the timeout). The runtime stops this process now.", file=sys.stderr, flush=True)


def _split_address(address: str) -> tuple[str, int] | None:
  """'host:port' (IPv6 hosts in brackets) -> (host, port), or None if it is not of that form."""
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit():
    return None
  return host.strip("[]"), int(port)


def _wait_for_coordinator(address: str, timeout_s: int) -> None:
  """Fails with a clear error when process 0's port does not open within `timeout_s`."""
  host, port = _split_address(address)
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, port), timeout=2):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(
            f"the coordinator {address} (process 0) did not answer within {timeout_s} s ({e}). "
            "Start process 0 with the same --coordinator_address, or check the host and port"
            ) from None
      time.sleep(0.5)


def start(read_settings) -> None:
  """For entry points: reads the settings (`define_flags()`'s function), connects the processes,
  exits with the error if that fails, and logs this process and its devices."""
  try:
    initialize(read_settings())
  except DistributedError as e:
    sys.exit(f"error: {e}")
  logging.info("%s", describe())


def describe() -> str:
  """One log line: this process, the job's size, and the devices."""
  local = jax.local_devices()
  kinds = sorted({d.device_kind for d in local})
  return (f"JAX process {jax.process_index()} of {jax.process_count()}: {len(local)} local / "
          f"{jax.device_count()} global {jax.default_backend()} devices ({', '.join(kinds)})")


def is_main_process() -> bool:
  return jax.process_index() == 0


def agree(value: bool | int) -> int:
  """Process 0's `value` on every process: decisions taken from files on a shared disk
  (is this stage finished? is there a checkpoint?) must not differ between hosts."""
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


_barriers = itertools.count()


def barrier(name: str, timeout_s: int = 3600) -> None:
  """Waits until every process got here (no-op for one process).

  A barrier of the coordination service, not a device collective: those give up after 30 s,
  while process 0 may take minutes here (e.g. generating the embedded dataset).
  """
  if jax.process_count() > 1:
    import orbax.checkpoint as ocp
    ocp.multihost.get_barrier_sync_fn()(key=f"amfi:{name}:{next(_barriers)}",
                                        timeout_ms=timeout_s * 1000)
