"""Skeleton stream alone: AGCN with the AMFI 512-channel unit (paper stage 2).

  python -m amfi_jax.main --config=configs/skeleton.py --workdir=/tmp/amfi

Variants (comma-separated): `demo` (tiny widths on the embedded generated dataset), `bones`
(joints + bones, 6 channels), `preset=reference` (exactly the ten-unit 2s-AGCN).
"""

from amfi_jax import configlib

VARIANTS = ("demo", "bones", "preset")


def get_config(arg: str | None = None):
  config = configlib.base_config(stages=("skeleton",))
  config = configlib.apply_variant(config, arg, VARIANTS)
  config.lock()
  return config
