"""RGB stream alone: ResNet3D-18 on 16×112×112 clips (paper stage 1).

  python -m amfi_jax.main --config=configs/rgb.py --workdir=/tmp/amfi

Variants: `demo` (tiny widths on the embedded generated NTU-format dataset).
"""

from amfi_jax import configlib

VARIANTS = ("demo",)


def get_config(arg: str | None = None):
  config = configlib.base_config(stages=("rgb",))
  config = configlib.apply_variant(config, arg, VARIANTS)
  config.lock()
  return config
