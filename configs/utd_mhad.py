"""AMFI-Net on real UTD-MHAD, depth + skeleton: the whole experiment from the raw .mat files.

  python -m amfi_jax.main --config=configs/utd_mhad.py --workdir=DIR \
      --config.data.manual_dir=../shared/data/utd_mhad

Builds the dataset into DIR/data on first use (or reads a built one from
`--config.data.data_dir`), then trains the skeleton stream (AGCN), the depth stream (ResNet3D-18
on 1-channel depth clips, in the RGB stream's place, its features also drawn towards the skeleton
stream's) and the AMFI head on both frozen streams' cached features, and writes each stage's
reports and DIR/results.json. Protocol `final`: trains
on subjects 1, 3, 5, 7 with a fixed schedule and reports the last checkpoint on subjects
2, 4, 6, 8. Seeds: `--config.seed=N`. The paper's ablations (Tables 3–6) on such runs:
`python -m amfi_jax.tools.ablations --workdirs=DIR0,DIR1,DIR2`. Settings:
`amfi_jax.configlib.utd_mhad`; results and what mattered: docs/results.md.

Variants: `protocol=validation` (train on 1, 3, 5, select on 7), `select_on_test` (the paper's
Algorithm 1, optimistic), and the fusion ablations `fusion=KIND`, `lambda=X`, `decision=MODALITY`.
"""

from amfi_jax import configlib

VARIANTS = ("protocol", "select_on_test", "fusion", "lambda", "decision")


def get_config(arg: str | None = None):
  # The skeleton stream first: the depth stream distils its features (configlib.utd_mhad).
  return configlib.make_config(("skeleton", "rgb", "fusion"), arg, VARIANTS,
                               always=("utd_mhad",))
