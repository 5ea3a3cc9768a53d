"""AMFI-Net, all three stages: RGB stream → skeleton stream → fusion head (paper Algorithm 1).

  python -m amfi_jax.main --config=configs/fusion.py --workdir=/tmp/amfi

Variants (`configs/fusion.py:VARIANT[,VARIANT...]`, defined in `amfi_jax.configlib`):
  demo                tiny widths on the embedded generated NTU-format dataset
  fusion=KIND         Table 3 ablation: average | multiply | max | concat | amfi
  lambda=X            Table 5: weight λ of L_gate (default 1; the paper finds 1.5 best)
  decision=MODALITY   Table 6: skeleton (default) | rgb decides the confidence gate
  association=MODE    tokens (default) | elements reading of the non-local association
  bones               joints + bones (6 channels) as the skeleton input
  motion              joints, bones and their frame-to-frame motions (12 channels)
  select_on_test      the paper's protocol: train on train+validation, select on test
e.g. `--config=configs/fusion.py:fusion=max` or `--config=configs/fusion.py:demo,lambda=1.5`.
"""

from amfi_jax import configlib

VARIANTS = ("demo", "fusion", "lambda", "decision", "association", "bones", "motion",
            "select_on_test")


def get_config(arg: str | None = None):
  return configlib.make_config(("rgb", "skeleton", "fusion"), arg, VARIANTS)
