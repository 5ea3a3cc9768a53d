"""RGB stream alone: ResNet3D-18 on 16×112×112 clips (paper stage 1).

  python -m amfi_jax.main --config=configs/rgb.py --workdir=/tmp/amfi

Variants (`amfi_jax.configlib`): `demo` (tiny widths on the embedded generated NTU-format
dataset), `select_on_test` (train on train+validation, select on test).
"""

from amfi_jax import configlib

VARIANTS = ("demo", "select_on_test")


def get_config(arg: str | None = None):
  return configlib.make_config(("rgb",), arg, VARIANTS)
