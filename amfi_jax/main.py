"""Trains AMFI-Net: the stages the config lists (RGB → skeleton → fusion), resuming by itself.

  python -m amfi_jax.main --config=configs/fusion.py --workdir=/tmp/amfi
  python -m amfi_jax.main --config=configs/fusion.py:demo --workdir=/tmp/amfi_demo

Several processes (hosts): see `amfi_jax.distributed` and the scripts in `launch/`, e.g.
  launch/local.sh 2 -- --config=configs/fusion.py:demo --workdir=/tmp/amfi_2p
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from amfi_jax import distributed, run_context
from amfi_jax.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports "
                               "(shared by all processes of a multi-process job).")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", distributed.MODES,
                                 "auto: multi-process when settings or a cluster are found; on: "
                                 "require it; off: single process.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in the job (else $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process, 0-based (else $JAX_PROCESS_ID).")
_TIMEOUT = flags.DEFINE_integer("distributed_timeout", 300,
                                "Seconds to wait for all processes to connect.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_timeout", 100,
                                  "Seconds after which a silent process counts as dead and the "
                                  "job stops.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", None,
                                    "CPU devices per process (testing sharding on one machine).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  run_context.quiet_library_logs()
  try:
    distributed.initialize(distributed.settings_from(
        _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
        timeout_s=_TIMEOUT.value, heartbeat_timeout_s=_HEARTBEAT.value,
        cpu_devices=_CPU_DEVICES.value))
  except distributed.DistributedError as e:
    sys.exit(f"error: {e}")
  logging.info("%s", distributed.describe())
  try:
    loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except loop.Preempted as e:
    logging.warning("%s", e)
    print(str(e), file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
