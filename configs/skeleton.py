"""Skeleton stream alone: AGCN with the AMFI 512-channel unit (paper stage 2).

  python -m amfi_jax.main --config=configs/skeleton.py --workdir=/tmp/amfi

Variants (comma-separated, defined in `amfi_jax.configlib`): `demo` (tiny widths on the embedded
generated dataset), `bones` (joints + bones, 6 channels), `motion` (joints, bones and their
motions, 12 channels), `preset=reference` (exactly the ten-unit 2s-AGCN), `select_on_test`
(train on train+validation, select on test).
"""

from amfi_jax import configlib

VARIANTS = ("demo", "bones", "motion", "preset", "select_on_test")


def get_config(arg: str | None = None):
  return configlib.make_config(("skeleton",), arg, VARIANTS)
