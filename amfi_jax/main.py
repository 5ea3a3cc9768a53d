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

from amfi_jax import cli, configlib, distributed, workdir as workdir_lib
from amfi_jax.monitoring import logs
from amfi_jax.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (file.py[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and reports "
                               "(shared by all processes of a multi-process job).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Re-run in a workdir trained with a different config (fields "
    "that change the checkpoints' shapes or meaning are refused without it).")
_DISTRIBUTED_SETTINGS = distributed.define_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  # Every check that needs neither devices nor data, before JAX starts.
  config = cli.config_value(_CONFIG)
  configlib.validate(config)
  workdir_lib.check_workdir_path(_WORKDIR.value)
  distributed.start(_DISTRIBUTED_SETTINGS)
  try:
    loop.train_and_evaluate(config, _WORKDIR.value, _ALLOW_CONFIG_CHANGE.value)
  except loop.Preempted as e:
    logging.warning("%s", e)
    print(str(e), file=sys.stderr)


if __name__ == "__main__":
  cli.run(main)
