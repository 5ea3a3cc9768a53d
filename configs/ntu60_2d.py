"""Skeleton stream on 2-D poses of a pose estimator: NTU-60 as COCO-17 keypoints (x, y, score).

  python -m amfi_jax.main --config=configs/ntu60_2d.py --workdir=DIR \
      --config.data.manual_dir=DIR_WITH_ntu60_hrnet.pkl

Builds the `pose_pickle/ntu60_2d_xsub` dataset into DIR/data on first use from PYSKL's
`ntu60_hrnet.pkl` (HRNet poses; any PYSKL / MMAction2 pose pickle of NTU-60 works, see
docs/data.md), or reads a built one from `--config.data.data_dir`, then trains the AGCN on
(x, y, score) with the coco17 graph and two persons, 100 frames per sequence. Settings:
`amfi_jax.configlib.ntu60_2d`. One sample of a pickle:
`python -m amfi_jax.predict --workdir=DIR --pose_pickle=F.pkl --sample=NAME`.

Variants: `xview` (cross-view instead of cross-subject), `protocol=final|validation|test`,
`select_on_test` (the paper's Algorithm 1), `preset=reference` (the ten-unit 2s-AGCN).
"""

from amfi_jax import configlib

VARIANTS = ("xview", "protocol", "select_on_test", "preset")


def get_config(arg: str | None = None):
  return configlib.make_config(("skeleton",), arg, VARIANTS, always=("ntu60_2d",))
