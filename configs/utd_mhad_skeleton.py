"""Skeleton stream on the real UTD-MHAD skeletons, cross-subject protocol.

  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=../shared/data/utd_mhad --data_dir=$HOME/tensorflow_datasets
  python -m amfi_jax.main --config=configs/utd_mhad_skeleton.py --workdir=/tmp/utd_skeleton \
      --config.data.data_dir=$HOME/tensorflow_datasets

Subjects 1, 3, 5 train, subject 7 is the validation split the best checkpoint is selected on,
2, 4, 6, 8 are the test split (SPEC §3.4). Settings: `amfi_jax.configlib.utd_mhad`. Variants:
`bones` (joints + bones, 6 channels), `select_on_test` (the paper's Algorithm 1: train on
1, 3, 5, 7 and select on test).
"""

from amfi_jax import configlib

VARIANTS = ("bones", "select_on_test")


def get_config(arg: str | None = None):
  return configlib.make_config(("skeleton",), arg, VARIANTS, always=("utd_mhad",))
