"""Skeleton stream alone on the real UTD-MHAD skeletons, cross-subject.

  python -m amfi_jax.main --config=configs/utd_mhad_skeleton.py --workdir=/tmp/utd_skeleton \
      --config.data.manual_dir=../shared/data/utd_mhad

Builds the dataset from the raw .mat files into the workdir on first use (or reads a built one
from `--config.data.data_dir`). Protocol `final`: trains on subjects 1, 3, 5, 7 with a fixed
schedule and reports the last checkpoint on subjects 2, 4, 6, 8 (SPEC §3.4). Settings:
`amfi_jax.configlib.utd_mhad`. Variants: `protocol=validation` (train on 1, 3, 5, select on 7),
`select_on_test` (the paper's Algorithm 1: select on test, optimistic), `bones` (joints + bones).
"""

from amfi_jax import configlib

VARIANTS = ("bones", "select_on_test", "protocol")


def get_config(arg: str | None = None):
  return configlib.make_config(("skeleton",), arg, VARIANTS, always=("utd_mhad",))
