"""Skeleton stream on the real UTD-MHAD skeletons, cross-subject protocol.

  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=../shared/data/utd_mhad --data_dir=$HOME/tensorflow_datasets
  python -m amfi_jax.main --config=configs/utd_mhad_skeleton.py --workdir=/tmp/utd_skeleton \
      --config.data.data_dir=$HOME/tensorflow_datasets

Subjects 1, 3, 5 train, subject 7 is the validation split the best checkpoint is selected on,
2, 4, 6, 8 are the test split (SPEC §3.4). The 20-joint Kinect-v1 graph, one person, sequences
padded to 128 frames like NTU's to 300. Variants: `bones` (joints + bones, 6 channels),
`select_on_test` (the paper's Algorithm 1: train on 1, 3, 5, 7 and select on test).
"""

from amfi_jax import configlib

VARIANTS = ("bones", "select_on_test")


def get_config(arg: str | None = None):
  config = configlib.base_config(stages=("skeleton",))
  config.data.dataset = "utd_mhad/skeleton_depth"
  config.data.rgb_modality = "depth"
  m = config.model
  m.num_classes = 27
  m.skeleton.graph = "utd_mhad"
  m.skeleton.num_persons = 1
  # The ten-unit 2s-AGCN at half width: 431 training sequences do not need 3.5 M parameters,
  # and a CPU trains it in minutes.
  m.skeleton.layers = "reference"
  m.skeleton.width_multiplier = 0.5
  t = config.train.skeleton
  t.batch_size = 32
  t.eval_batch_size = 48
  t.learning_rate = 0.05  # the reference's 0.1 at batch 64, scaled to batch 32
  t.num_epochs = 40
  t.decay_epochs = (25, 35)
  t.eval_every_epochs = 2
  config.train.log_every_steps = 20
  variant = configlib.parse_variant(arg)
  unknown = sorted(set(variant) - set(VARIANTS))
  if unknown:
    raise ValueError(f"Unknown config variant(s) {unknown}; this config accepts {list(VARIANTS)}")
  if "bones" in variant:
    m.skeleton.in_channels = 6
    config.data.skeleton_stream = "joint_bone"
  if "select_on_test" in variant:
    config.data.select_on = "test"
  config.lock()
  return config
