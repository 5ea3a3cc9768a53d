"""The config schema: defaults (the paper's settings), `file.py:variant` arguments, validation.

The files in `configs/` choose the stages and variants; every field lives here once, so a field
added for one stage is visible, with its default, in all of them. Derived values (steps from
epochs, shapes from sizes) are never computed here but where they are used, so a command-line
override such as `--config.model.num_classes=120` leaves nothing stale.
"""

from __future__ import annotations

import math

import ml_collections

from amfi_jax import parallel
from amfi_jax.data import datasets
from amfi_jax.data.pipeline import PROTOCOLS
from amfi_jax.data.preprocessing.samples import SKELETON_STREAM_CHANNELS, SKELETON_STREAMS
from amfi_jax.errors import ConfigError
from amfi_jax.models.agcn import parse_layers
from amfi_jax.models.graphs import GRAPHS
from amfi_jax.models.fusion import ASSOCIATIONS, DECISION_MODALITIES, FUSIONS
from amfi_jax.models.resnet3d import INPUT_NORMALIZATIONS
from amfi_jax.training.optim import SCHEDULES
from amfi_jax.workdir import STAGES, STREAM_STAGES


# The channels each clip modality can feed: depth has one, or two with the arms crop of the
# `body_arms` UTD-MHAD builds (`clips.DEPTH_VIEWS`); the dataset must store as many
# (`training.setup.check_dataset_fits` checks it against the built dataset).
RGB_STREAM_CHANNELS = {"rgb": (3,), "depth": (1, 2)}


def model_config() -> ml_collections.ConfigDict:
  """Paper sizes: ResNet3D-18 and the AMFI AGCN (ten reference units + a 512 unit), C = 512."""
  return ml_collections.ConfigDict({
      "num_classes": 60,
      "dtype": "float32",  # compute dtype; parameters are float32 either way
      "rgb": {
          "width_multiplier": 1.0,
          "blocks_per_stage": (2, 2, 2, 2),
          "in_channels": 3,  # 1 for depth
          "input_normalization": "minmax",  # paper Eq. 3; `kinetics` for torchvision weights
      },
      "skeleton": {
          "layers": "amfi",  # `reference`, or units such as "64,128/2,256/2,512"
          "width_multiplier": 1.0,
          "in_channels": 3,  # 6 for joints + bones
          "graph": "ntu",
          "num_persons": 2,
      },
      "fusion": {
          "kind": "amfi",  # Table 3: average | multiply | max | concat | amfi
          "association": "tokens",
          "element_width": 8,  # embedding width per position for association=elements
          "se_reduction": 16,
          "decision": "skeleton",  # Table 6: skeleton | rgb
          "gate_weight": 1.0,  # λ of L_total = CE + λ·L_gate (Table 5 finds 1.5 best)
          "freeze_backbones": True,
      },
  })


def data_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      # '' = the embedded dataset: NTU-format data generated (and built) under WORKDIR/data.
      # Else a TFDS name with config ('ntu_rgbd/ntu60_xsub', 'utd_mhad/skeleton_depth') found in
      # `data_dir`, or the directory of a prepared dataset version.
      "dataset": "",
      "data_dir": "",
      # Raw files to build `dataset` from when it is not built yet in `data_dir` (default: the
      # run's data/ directory), e.g. ../shared/data/utd_mhad.
      "manual_dir": "",
      # final | validation | test (`pipeline.PROTOCOLS`): which subjects train, what selects the
      # reported checkpoint.
      "protocol": "validation",
      # joint | joint_bone | joint_bone_motion (model.skeleton.in_channels 3 | 6 | 12)
      "skeleton_stream": "joint",
      # > 0: skeleton sequences linearly resampled to this many frames when read (from their
      # stored frame_count), instead of the stored length padded by repetition.
      "skeleton_frames": 0,
      # > 0: the model sees this many of each stored clip's K frames (K a multiple of it), one
      # from each of equal groups: drawn at random in training (temporal augmentation, with
      # `augment`), the groups' middle frames otherwise (`preprocessing.clips.select_clip_frames`).
      "clip_frames": 0,
      # > 1: wherever the frames are fixed (evaluation, cached fusion features, export, predict,
      # unaugmented training) each clip is seen as this many views of `clip_frames` frames, one
      # from each part of every group, and the RGB stream averages their pooled features
      # (multi-view testing, `preprocessing.clips.select_clip_frames`). 1 ≤ it ≤ K / clip_frames.
      "clip_views": 1,
      "rgb_modality": "rgb",  # rgb | depth (UTD-MHAD; needs model.rgb.in_channels = 1)
      "augment": True,  # rotation / flip / scaling of clips in training (SPEC §3.3)
      # What `augment` does to clips (`preprocessing.clips.augment_clip`): rotations by multiples
      # of 90°, flips, zoom by a factor in `scale`, translation by up to `shift` × the side;
      # with clip_frames > 0, a temporal crop: the frames drawn from a random window of
      # `crop`–1 of the stored ones (`preprocessing.clips.select_clip_frames`; 0 = off); depth
      # clips: the performer moved nearer or farther by up to `depth_offset` (`offset_depth`).
      "clip_augment": {"rotate": True, "flip": True, "scale": (0.8, 1.2), "shift": 0.0,
                       "crop": 0.0, "depth_offset": 0.0},
      # Skeleton augmentation in training (`preprocessing.skeleton_augment`), applied on the host
      # and deterministic per seed. Off by default: the 2s-AGCN reference trains without it.
      "skeleton_augment": {
          "enabled": False,
          "rotate": (10.0, 10.0, 30.0),  # ± degrees about x, y, z (z = the body's up axis)
          "scale": 0.1,  # factors in 1 ± scale, per axis
          "shear": 0.0,  # off-diagonal shear in ± shear
          "crop": 0.8,  # temporal crop of 0.8–1 of the valid frames, resampled (0 = off)
          "jitter": 0.0,  # Gaussian noise (metres) on every coordinate
      },
      "num_threads": 4,
      "prefetch": 4,
      # The embedded dataset (used when `dataset` is ''): size of the generated NTU-format data
      # and of the stored clips.
      "embedded": {
          "num_classes": 8,
          "performers": (1, 2, 4, 5, 8, 9, 3, 6, 7, 10),
          "replications": (1, 2),
          "clip_length": 8,
          "image_size": 48,  # large enough to show the held cup and the cap
          # The generated people stand 2.6-4 m from the camera, smaller in the frame than NTU's
          # performers: a 600-px square (of 1920×1080) frames them as NTU's 1000 px do.
          "crop_size": 600,
          "max_frames": 64,
          "seed": 0,
      },
  })


def stage_config(*, batch_size, num_epochs, learning_rate, weight_decay, decay_epochs,
                 nesterov=False) -> ml_collections.ConfigDict:
  """Optimisation of one stage. Durations are in epochs unless `num_steps` > 0 overrides them;
  they are resolved to steps in one place (`training.optim.resolve_schedule`)."""
  return ml_collections.ConfigDict({
      "batch_size": batch_size,  # global batch, over all processes and devices
      "eval_batch_size": batch_size,
      "num_epochs": float(num_epochs),
      "num_steps": -1,
      "learning_rate": learning_rate,
      "momentum": 0.9,
      "nesterov": nesterov,
      "weight_decay": weight_decay,  # L2 added to every parameter's gradient, as torch SGD does
      # `step`: learning rate × decay_factor at each of decay_epochs; `cosine`: from
      # learning_rate down to 0 over the stage (decay_epochs unused).
      "schedule": "step",
      "decay_epochs": tuple(float(e) for e in decay_epochs),  # learning rate × decay_factor at each
      "decay_factor": 0.1,
      "eval_every_epochs": 1.0,
      "augment": True,  # the data augmentations of config.data apply in this stage
      # > 0: mixup in training (Zhang et al. 2018): each batch blended with itself reversed by a
      # factor drawn from Beta(mixup, mixup), the loss likewise on both labels. 0 = off (paper).
      "mixup": 0.0,
      # > 0: label smoothing (Szegedy et al. 2016): the cross entropy's target puts this much of
      # its mass evenly on all classes. 0 = off (paper).
      "label_smoothing": 0.0,
      # Dropout rate, in training, of the pooled stream features: before a stream's classifier
      # in its own stage (2s-AGCN's `drop_out`, the dropout of video models' heads), before the
      # fusion head in the fusion stage. The features a stream reports (to distillation, the
      # fusion head, caches) are never dropped. 0 = off (paper).
      "feature_dropout": 0.0,
      # A stream stage only: the other stream ('rgb' or 'skeleton', trained earlier in
      # config.stages) whose features this stream's learn to point along, with weight
      # distill_weight (`training.distillation`). '' = off (paper). distill_logits > 0 adds
      # the distillation of its class scores softened at distill_temperature, with that weight.
      "distill_from": "",
      "distill_weight": 1.0,
      "distill_logits": 0.0,
      "distill_temperature": 4.0,
  })


def train_config() -> ml_collections.ConfigDict:
  """Paper §4.2 / SPEC §2. The paper gives no RGB epoch count; 40 epochs with steps at 20 and 30
  follow the skeleton schedule's shape."""
  return ml_collections.ConfigDict({
      "rgb": stage_config(batch_size=32, num_epochs=40, learning_rate=0.1, weight_decay=5e-4,
                          decay_epochs=(20, 30)),
      # 2s-AGCN reference schedule (batch 64, 50 epochs, ×0.1 at 30 and 40, Nesterov) with the
      # paper's weight decay 5e-4.
      "skeleton": stage_config(batch_size=64, num_epochs=50, learning_rate=0.1,
                               weight_decay=5e-4, decay_epochs=(30, 40), nesterov=True),
      # Stage 3: 6 epochs, lr 0.01 divided by 10 at epoch 3.
      "fusion": stage_config(batch_size=32, num_epochs=6, learning_rate=0.01, weight_decay=5e-4,
                             decay_epochs=(3,)),
      "log_every_steps": 20,
      "keep_latest": 2,  # checkpoints kept besides the best one
  })


def base_config(stages: tuple[str, ...]) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.stages = stages
  config.seed = 0
  config.model = model_config()
  config.data = data_config()
  config.train = train_config()
  # Frozen streams without augmentation: compute their features once and train the head on them
  # (`training.feature_cache`); needs config.train.fusion.augment = False.
  config.train.fusion.cache_features = False
  # Devices as a (data, model) mesh; `rules` map the models' logical axes onto it ('' = not
  # sharded), e.g. `--config.mesh.rules.channels=model` splits activations by channel.
  config.mesh = ml_collections.ConfigDict({"data": -1, "model": 1,
                                           "rules": dict(parallel.DEFAULT_RULES)})
  # Stream initialisation, e.g. Orbax checkpoints written by `python -m amfi_jax.convert`.
  # Empty: from scratch (single-stream stages) or from this run's best stage checkpoint (fusion).
  config.init_from = ml_collections.ConfigDict({"rgb": "", "skeleton": ""})
  return config


def parse_variant(arg: str | None) -> dict[str, str]:
  """`demo,fusion=max` → {'demo': '', 'fusion': 'max'}."""
  out: dict[str, str] = {}
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    key, _, value = part.partition("=")
    out[key.strip()] = value.strip()
  return out


# ---- Variants: each sets every field it implies. `configs/*.py` only choose among them. ----

def demo(config: ml_collections.ConfigDict) -> None:
  """Tiny widths of the same architectures on the embedded dataset, for the demo and tests."""
  m = config.model
  m.num_classes = config.data.embedded.get_ref("num_classes")  # follows overrides
  m.rgb.width_multiplier = 0.125  # 8 … 64 channels
  m.rgb.blocks_per_stage = (1, 1, 1, 1)
  m.skeleton.layers = "64,128/2,256/2,512"
  m.skeleton.width_multiplier = 0.125  # 8 … 64 channels, matching the RGB width
  m.fusion.se_reduction = 4
  # Joints, bones and their frame-to-frame motions, resampled to 32 frames: the motions carry
  # the finger and toe cycles that tell the generated skeleton-only twins apart, which joints
  # + bones alone never did; 32 frames keep the 48 epochs this needs within the demo's minutes.
  motion(config)
  config.data.skeleton_frames = 32
  # Augmented so that the skeleton stream cannot memorise its training samples, RGB-only twins
  # included: a stream that is right on every training sample leaves the fusion head on the
  # frozen streams no reason to read the RGB feature.
  config.data.skeleton_augment.enabled = True
  t = config.train
  # (epochs, learning rate, batch): the RGB stream underfit at 16 epochs of batch 16, so it gets
  # six times those updates. Measurements: docs/results.md.
  for name, epochs, lr, batch in (("rgb", 48, 0.1, 8), ("skeleton", 48, 0.1, 16)):
    t[name].batch_size = batch
    t[name].num_epochs = epochs
    t[name].learning_rate = lr
    t[name].decay_epochs = (epochs * 3 // 4,)
    t[name].eval_every_epochs = 2
  # The UTD-MHAD recipe's head with feature dropout 0.3 instead of its 0.7: the validation
  # performer prefers 0.3 (93.1 against 91.7 %, mean of seeds 0-2, docs/results.md#embedded-demo).
  # Cached without the dropout the head ignores the RGB feature. It starts from scratch, so it
  # gets a larger rate than the paper's 0.01.
  _fusion_head_on_cached_features(config, feature_dropout=0.3)
  t.fusion.batch_size = 16
  t.fusion.learning_rate = 0.05
  for name in ("rgb", "skeleton", "fusion"):
    t[name].eval_batch_size = 48
  t.log_every_steps = 10


def _fusion_head_on_cached_features(config: ml_collections.ConfigDict,
                                    feature_dropout: float) -> None:
  """The fusion head trained on the frozen streams' cached, unaugmented features (seconds per
  epoch, so 60 epochs fit, lr × 0.1 at 45), with dropout on the features it reads: frozen
  streams are nearly always right on their own training samples, so without it the head fits
  feature interactions that do not carry over to new subjects (docs/results.md)."""
  f = config.train.fusion
  f.cache_features = True
  f.augment = False
  f.num_epochs = 60
  f.decay_epochs = (45,)
  f.feature_dropout = feature_dropout
  f.eval_every_epochs = 10


def _skeleton_stream(config: ml_collections.ConfigDict, stream: str) -> None:
  """The skeleton input `stream` and the AGCN's input channels, which must agree."""
  config.data.skeleton_stream = stream
  config.model.skeleton.in_channels = SKELETON_STREAM_CHANNELS[stream]


def bones(config: ml_collections.ConfigDict) -> None:
  """Joints + bones (6 channels) as the skeleton input."""
  _skeleton_stream(config, "joint_bone")


def motion(config: ml_collections.ConfigDict) -> None:
  """Joints, bones and their frame-to-frame motions (12 channels) as the skeleton input."""
  _skeleton_stream(config, "joint_bone_motion")


def fusion_kind(config: ml_collections.ConfigDict, kind: str) -> None:
  """Table 3: average | multiply | max | concat | amfi."""
  config.model.fusion.kind = kind


def gate_weight(config: ml_collections.ConfigDict, value: str) -> None:
  """Table 5: λ of L_total = CE + λ·L_gate."""
  try:
    config.model.fusion.gate_weight = float(value)
  except ValueError:
    raise ConfigError(f"Variant lambda={value!r} is not a number") from None


def decision(config: ml_collections.ConfigDict, modality: str) -> None:
  """Table 6: the modality whose confidence drives the gate (skeleton | rgb)."""
  config.model.fusion.decision = modality


def association(config: ml_collections.ConfigDict, mode: str) -> None:
  """tokens | elements reading of the non-local association."""
  config.model.fusion.association = mode


def skeleton_preset(config: ml_collections.ConfigDict, layers: str) -> None:
  """The AGCN's units: `reference` (the ten-unit 2s-AGCN), `amfi`, or units like 64,128/2."""
  config.model.skeleton.layers = layers


def select_on_test(config: ml_collections.ConfigDict) -> None:
  """The paper's Algorithm 1: train on train+validation, select the checkpoint on test."""
  config.data.protocol = "test"


def protocol(config: ml_collections.ConfigDict, name: str) -> None:
  """final | validation | test: which subjects train and what selects the checkpoint."""
  config.data.protocol = name


def utd_mhad(config: ml_collections.ConfigDict) -> None:
  """Real UTD-MHAD (depth + skeleton, SPEC §3.4): its dataset, 27 classes, the 20-joint Kinect-v1
  graph with one person, depth clips in the RGB stream (1 channel), the `final` protocol (train
  on subjects 1, 3, 5, 7, report the last checkpoint on 2, 4, 6, 8), and the skeleton recipe
  for its 431 training sequences (docs/results.md#utd-mhad: what mattered)."""
  d = config.data
  # 16 depth frames: +3.7 points over 8 on each of held-out subjects 7 and 5 (docs/results.md),
  # for twice the depth stage's compute (a seed's three stages stay well within 45 min); drawn
  # from 48 stored frames that span the whole sequence, one at random from each group of 3
  # (the middle one in evaluation): 80.6 / 79.6 % on subjects 7 / 5 against 81.5 / 74.1 % for
  # 16 fixed frames at the paper's intervals.
  d.dataset = "utd_mhad/skeleton_depth_k48_s48_spread"
  d.clip_frames = 16
  # The depth stream also learns to point each training sequence's feature along the skeleton
  # stream's (`training.distillation`; so the skeleton stage trains first): 82.4 / 82.4 % on
  # held-out subjects 7 / 5 against 80.6 / 79.6 % without; with weight 3 instead of 1,
  # 82.4 / 78.7 % against 79.6 / 73.1 % (the same teachers and seed, rerun at 471941a).
  config.train.rgb.distill_from = "skeleton"
  config.train.rgb.distill_weight = 3.0
  d.rgb_modality = "depth"
  d.protocol = "final"
  # UTD-MHAD has mirror-image classes (swipe left / right, circles clockwise / counter-
  # clockwise), so the paper's flips and 90° rotations would change the label: zoom and shift.
  d.clip_augment.rotate = False
  d.clip_augment.flip = False
  d.clip_augment.scale = (0.85, 1.15)
  d.clip_augment.shift = 0.08
  # Every sequence (41-125 frames) resampled to 32 frames instead of padded by repetition to
  # 128, and augmented: together +18 points on held-out subjects 7 and 5.
  d.skeleton_frames = 32
  d.skeleton_augment.enabled = True
  # Joints alone: joints, bones and their motions (`motion`) gained 1.6 points on held-out
  # subject 7 but lost 5.9 on subject 5 (3 seeds each; docs/results.md).
  m = config.model
  m.num_classes = 27
  # Both streams are the paper's at quarter width, so their features agree (128) for the fusion
  # head. Depth, sized for a 2-core CPU: ResNet3D-18's four stages with one block each on
  # 16 x 48 x 48 clips (1/8 width: 10 points lower on held-out subject 7).
  m.rgb.in_channels = 1
  m.rgb.width_multiplier = 0.25
  m.rgb.blocks_per_stage = (1, 1, 1, 1)
  m.skeleton.graph = "utd_mhad"
  m.skeleton.num_persons = 1
  # The AMFI AGCN (ten 2s-AGCN units + a 512 unit) at quarter width for 431 training sequences.
  m.skeleton.layers = "amfi"
  m.skeleton.width_multiplier = 0.25
  t = config.train.skeleton
  t.batch_size = 32
  t.eval_batch_size = 48
  t.learning_rate = 0.05  # the reference's 0.1 at batch 64, scaled to batch 32
  t.num_epochs = 30
  t.decay_epochs = (20, 26)
  t.eval_every_epochs = 5
  # Label smoothing 0.1: 93.2 / 83.3 % on held-out subjects 7 / 5 against 90.7 / 83.0 % without
  # (means of seeds 0-2, last step; docs/results.md).
  t.label_smoothing = 0.1
  r = config.train.rgb
  r.batch_size = 16
  r.eval_batch_size = 48
  r.learning_rate = 0.1
  # 90 epochs (cosine): 86.1 / 81.5 % on held-out subjects 7 / 5 against 85.2 / 78.7 % for 60
  # (the label-smoothed skeleton teachers, seed 0); 60 had given 84.3 / 84.3 % against
  # 80.6 / 73.1 % for 40 (training accuracy 0.97 / 1.00 at the end against 0.89 / 0.97: with
  # the distillation the stream underfitted at 40). The depth stage is 2.25x the 40-epoch one.
  r.num_epochs = 90
  r.schedule = "cosine"
  r.eval_every_epochs = 5
  # The head trains on the frozen streams' cached features, unaugmented. The paper's 6 epochs
  # are 78 steps on 431 sequences: 60 epochs (lr × 0.1 at 45) reach 87.0 % instead of 76.9 % on
  # held-out subject 7 (docs/results.md).
  # Dropout on the stream features the head reads, so that it cannot lean on one stream that is
  # right on nearly every training sequence: 0.3 reached 90.7 % instead of 87.0 % on subject 7.
  # 0.7, chosen on four held-out stream pairs (subjects 7 and 5, distill weights 1 and 3; mean
  # last-step validation top-1 83.3 / 84.3 / 84.7 / 85.4 % for 0.3 / 0.4 / 0.5 / 0.7).
  _fusion_head_on_cached_features(config, feature_dropout=0.7)
  # Label smoothing 0.1 in the head too: 89.8 / 84.0 % on held-out subjects 7 / 5 against
  # 86.4 / 82.7 % without (head seeds 0-2 on one stream pair per subject, last step;
  # docs/results.md).
  config.train.fusion.label_smoothing = 0.1
  config.train.log_every_steps = 20


def ntu60_2d(config: ml_collections.ConfigDict) -> None:
  """NTU-60 as 2-D poses of a pose estimator (PYSKL's `ntu60_hrnet.pkl`, COCO-17 keypoints;
  `data/builders/pose_pickle_builder.py`): the skeleton stream reads (x, y, score) on the
  coco17 graph with two persons, 60 classes, cross-subject (`cross_view` switches)."""
  d = config.data
  d.dataset = "pose_pickle/ntu60_2d_xsub"
  # 100 frames spread over the whole sequence, as PYSKL's 2-D NTU models see them
  # (UniformSample(clip_len=100)), instead of 300 padded by repetition: a third of the compute.
  d.skeleton_frames = 100
  # Skeleton augmentation stays off: its rotations are 3-D and would mix the score into x, y.
  m = config.model
  m.num_classes = 60
  m.skeleton.graph = "coco17"
  m.skeleton.num_persons = 2
  m.skeleton.in_channels = 3  # x, y, score


def cross_view(config: ml_collections.ConfigDict) -> None:
  """NTU-60 cross-view: the `_xview` config of the configured `_xsub` dataset."""
  d = config.data
  if not d.dataset.endswith("_xsub"):
    raise ConfigError(f"Variant xview switches a cross-subject dataset (…_xsub) to cross-view, "
                      f"but config.data.dataset={d.dataset!r}")
  d.dataset = d.dataset[:-len("_xsub")] + "_xview"


# Variant name → (function, example value for the tests; None = takes no value).
VARIANTS: dict[str, tuple] = {
    "demo": (demo, None),
    "bones": (bones, None),
    "motion": (motion, None),
    "fusion": (fusion_kind, "concat"),
    "lambda": (gate_weight, "1.5"),
    "decision": (decision, "rgb"),
    "association": (association, "elements"),
    "preset": (skeleton_preset, "reference"),
    "select_on_test": (select_on_test, None),
    "protocol": (protocol, "final"),
    "utd_mhad": (utd_mhad, None),
    "ntu60_2d": (ntu60_2d, None),
    "xview": (cross_view, None),
}


def apply_variant(config: ml_collections.ConfigDict, arg: str | None,
                  allowed: tuple[str, ...]) -> ml_collections.ConfigDict:
  """Applies `file.py:variant` settings; unknown or malformed variants raise naming them."""
  variant = parse_variant(arg)
  unknown = sorted(set(variant) - set(allowed))
  if unknown:
    raise ConfigError(f"Unknown config variant(s) {unknown}; this config accepts {list(allowed)}")
  for key, value in variant.items():
    fn, example = VARIANTS[key]
    if example is None:
      if value:
        raise ConfigError(f"Config variant {key!r} takes no value, got {key}={value}")
      fn(config)
    else:
      if not value:
        raise ConfigError(f"Config variant {key!r} needs a value, e.g. {key}={example}")
      fn(config, value)
  return config


def make_config(stages: tuple[str, ...], arg: str | None, allowed: tuple[str, ...],
                always: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """What every `configs/*.py` does: the stages, the variants it always applies (e.g. its
  dataset), then the `file.py:variant` ones the user chose among `allowed`; locked."""
  config = base_config(stages)
  for name in always:
    apply_variant(config, name, (name,))
  apply_variant(config, arg, allowed)
  config.lock()
  return config


def _require_int(value, field: str, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ConfigError(f"{field} must be an integer ≥ {minimum}, got {value!r}")


def _validate_stage(t: ml_collections.ConfigDict, field: str) -> None:
  """A stage's optimisation settings that can be checked before any data exists."""
  _require_int(t.batch_size, f"{field}.batch_size", 1)
  _require_int(t.eval_batch_size, f"{field}.eval_batch_size", 1)
  if t.num_steps <= 0 and t.num_epochs <= 0:
    raise ConfigError(f"{field}: set num_epochs > 0 or num_steps > 0 (got {t.num_epochs} and "
                      f"{t.num_steps})")
  for name in ("learning_rate", "eval_every_epochs"):
    if not math.isfinite(t[name]) or t[name] <= 0:
      raise ConfigError(f"{field}.{name} must be a finite number > 0, got {t[name]}")
  for name in ("weight_decay", "momentum", "decay_factor"):
    if not math.isfinite(t[name]) or t[name] < 0:
      raise ConfigError(f"{field}.{name} must be a finite number ≥ 0, got {t[name]}")
  if not math.isfinite(t.mixup) or t.mixup < 0:
    raise ConfigError(f"{field}.mixup must be a finite number ≥ 0 (0 = off), got {t.mixup}")
  if not 0 <= t.feature_dropout < 1:
    raise ConfigError(f"{field}.feature_dropout must be in [0, 1) (0 = off), got "
                      f"{t.feature_dropout}")
  if not 0 <= t.label_smoothing < 1:
    raise ConfigError(f"{field}.label_smoothing must be in [0, 1) (0 = off), got "
                      f"{t.label_smoothing}")
  if any(not math.isfinite(e) or e <= 0 for e in t.decay_epochs):
    raise ConfigError(f"{field}.decay_epochs must be epochs > 0, got {tuple(t.decay_epochs)}")


def _validate_augmentation(d: ml_collections.ConfigDict) -> None:
  """The ranges `preprocessing.clips` and `preprocessing.skeleton_augment` draw from."""
  lo, hi = d.clip_augment.scale
  if not 0 < lo <= hi:
    raise ConfigError(f"config.data.clip_augment.scale must be a zoom range (lo, hi) with "
                      f"0 < lo ≤ hi, got {tuple(d.clip_augment.scale)}")
  if not 0 <= d.clip_augment.shift < 0.5:
    raise ConfigError("config.data.clip_augment.shift must be in [0, 0.5) (a fraction of the "
                      f"frame side), got {d.clip_augment.shift}")
  if not 0 <= d.clip_augment.crop <= 1:
    raise ConfigError("config.data.clip_augment.crop must be in [0, 1] (the shortest window, a "
                      f"fraction of the stored frames; 0 = off), got {d.clip_augment.crop}")
  if not 0 <= d.clip_augment.depth_offset < 1:
    raise ConfigError("config.data.clip_augment.depth_offset must be in [0, 1) (in units of the "
                      f"depth scale; 0 = off), got {d.clip_augment.depth_offset}")
  if d.clip_augment.crop and not d.clip_frames:
    raise ConfigError("config.data.clip_augment.crop needs config.data.clip_frames > 0 (it "
                      "crops the stored frames the clip's frames are drawn from)")
  a = d.skeleton_augment
  if len(a.rotate) != 3 or any(not 0 <= r <= 180 for r in a.rotate):
    raise ConfigError("config.data.skeleton_augment.rotate must be three angles in [0, 180] "
                      f"(± degrees about x, y, z), got {tuple(a.rotate)}")
  if not 0 <= a.scale < 1:
    raise ConfigError("config.data.skeleton_augment.scale must be in [0, 1) (factors in 1 ± "
                      f"scale stay positive), got {a.scale}")
  if not 0 <= a.crop <= 1:
    raise ConfigError("config.data.skeleton_augment.crop must be in [0, 1] (the fraction of the "
                      f"frames kept; 0 = off), got {a.crop}")
  for name in ("shear", "jitter"):
    if not 0 <= a[name] < math.inf:
      raise ConfigError(f"config.data.skeleton_augment.{name} must be a finite number ≥ 0, "
                        f"got {a[name]}")


def _validate_distillation(config: ml_collections.ConfigDict) -> None:
  """`config.train.<stage>.distill_from`: a stream learns from the other, trained before it."""
  for stage in STAGES:
    t = config.train[stage]
    teacher = t.distill_from
    if not teacher:
      continue
    field = f"config.train.{stage}.distill_from"
    if stage not in STREAM_STAGES or teacher not in STREAM_STAGES or teacher == stage:
      raise ConfigError(f"{field}={teacher!r}: only a stream stage ({' or '.join(STREAM_STAGES)}) "
                        "learns from the other stream; leave it '' elsewhere")
    stages = tuple(config.stages)
    # A teacher not listed must have finished in the workdir (checked when the stage starts).
    if stage in stages and teacher in stages[stages.index(stage):]:
      raise ConfigError(f"{field}={teacher!r} needs the {teacher} stage to train first: list "
                        f"it before {stage!r} in config.stages (got {stages})")
    for name in ("distill_weight", "distill_logits"):
      if not 0 <= t[name] < math.inf:
        raise ConfigError(f"config.train.{stage}.{name} must be a finite number ≥ 0, got "
                          f"{t[name]}")
    if not (t.distill_weight > 0 or t.distill_logits > 0):
      raise ConfigError(f"config.train.{stage}.distill_weight must be > 0 with {field} set "
                        f"(or config.train.{stage}.distill_logits > 0), got {t.distill_weight}")
    if not 0 < t.distill_temperature < math.inf:
      raise ConfigError(f"config.train.{stage}.distill_temperature must be a finite number > 0, "
                        f"got {t.distill_temperature}")
    if t.mixup:
      raise ConfigError(f"config.train.{stage}.mixup and {field} do not combine: a blended "
                        "sample has no teacher features")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises a ValueError naming the config field for values the code cannot use."""
  def check(field, value, allowed):
    if value not in allowed:
      raise ConfigError(f"config.{field} must be one of {list(allowed)}, got {value!r}")

  for i, stage in enumerate(config.stages):
    check(f"stages[{i}]", stage, STAGES)
  parallel.config_rules(config.mesh)  # raises naming config.mesh.rules.<axis>
  m = config.model
  if not isinstance(m.num_classes, int) or m.num_classes < 2:
    raise ConfigError(f"config.model.num_classes must be an integer ≥ 2, got {m.num_classes!r}")
  check("model.dtype", m.dtype, ("float32", "bfloat16"))
  check("model.rgb.input_normalization", m.rgb.input_normalization, INPUT_NORMALIZATIONS)
  check("model.rgb.in_channels", m.rgb.in_channels, (1, 2, 3))
  check("model.skeleton.in_channels", m.skeleton.in_channels,
        tuple(SKELETON_STREAM_CHANNELS.values()))
  try:
    parse_layers(m.skeleton.layers)
  except ValueError as e:
    raise ConfigError(f"config.model.skeleton.layers: {e}") from None
  check("model.fusion.kind", m.fusion.kind, FUSIONS)
  check("model.fusion.association", m.fusion.association, ASSOCIATIONS)
  check("model.fusion.decision", m.fusion.decision, DECISION_MODALITIES)
  for name in ("rgb", "skeleton"):
    if m[name].width_multiplier <= 0:
      raise ConfigError(f"config.model.{name}.width_multiplier must be > 0, "
                        f"got {m[name].width_multiplier}")
  if m.fusion.gate_weight < 0:
    raise ConfigError(f"config.model.fusion.gate_weight must be ≥ 0, got {m.fusion.gate_weight}")
  check("model.skeleton.graph", m.skeleton.graph, tuple(GRAPHS))
  _require_int(m.skeleton.num_persons, "config.model.skeleton.num_persons", 1)
  blocks = tuple(m.rgb.blocks_per_stage)
  if len(blocks) != 4:
    raise ConfigError(f"config.model.rgb.blocks_per_stage must be four counts (one per ResNet "
                      f"stage), got {blocks}")
  for i, count in enumerate(blocks):
    _require_int(count, f"config.model.rgb.blocks_per_stage[{i}]", 1)
  _require_int(m.fusion.element_width, "config.model.fusion.element_width", 1)
  _require_int(m.fusion.se_reduction, "config.model.fusion.se_reduction", 1)
  _require_int(config.seed, "config.seed", 0)
  _require_int(config.train.log_every_steps, "config.train.log_every_steps", 1)
  _require_int(config.train.keep_latest, "config.train.keep_latest", 1)
  for stage in STAGES:
    _validate_stage(config.train[stage], f"config.train.{stage}")
    check(f"train.{stage}.schedule", config.train[stage].schedule, SCHEDULES)
  _validate_distillation(config)
  d = config.data
  check("data.protocol", d.protocol, tuple(PROTOCOLS))
  _validate_augmentation(d)
  _require_int(d.num_threads, "config.data.num_threads", 0)
  _require_int(d.prefetch, "config.data.prefetch", 0)
  _require_int(d.clip_frames, "config.data.clip_frames", 0)
  _require_int(d.clip_views, "config.data.clip_views", 1)
  _require_int(d.skeleton_frames, "config.data.skeleton_frames", 0)
  if d.clip_views > 1 and not d.clip_frames:
    raise ConfigError(f"config.data.clip_views={d.clip_views} needs config.data.clip_frames > 0 "
                      "(views are drawn from the groups of stored frames)")
  check("data.skeleton_stream", d.skeleton_stream, SKELETON_STREAMS)
  check("data.rgb_modality", d.rgb_modality, tuple(RGB_STREAM_CHANNELS))
  # Fields that must agree: what the data pipeline feeds and what the model expects.
  f = config.train.fusion
  if f.cache_features and not m.fusion.freeze_backbones:
    raise ConfigError("config.train.fusion.cache_features needs frozen streams "
                      "(config.model.fusion.freeze_backbones=True)")
  if f.cache_features and f.augment:
    raise ConfigError("config.train.fusion.cache_features needs config.train.fusion.augment="
                      "False: augmented inputs change the features every step")
  channels = SKELETON_STREAM_CHANNELS[d.skeleton_stream]
  if m.skeleton.in_channels != channels:
    raise ConfigError(
        f"config.data.skeleton_stream={d.skeleton_stream!r} feeds {channels} channels but "
        f"config.model.skeleton.in_channels={m.skeleton.in_channels} (the `bones` and `motion` "
        "variants set both)")
  channels = RGB_STREAM_CHANNELS[d.rgb_modality]
  if m.rgb.in_channels not in channels:
    raise ConfigError(
        f"config.data.rgb_modality={d.rgb_modality!r} feeds {' or '.join(map(str, channels))} "
        f"channel(s) but config.model.rgb.in_channels={m.rgb.in_channels}")
  if not config.data.dataset:
    datasets.check_embedded(config.data)
    if m.num_classes != config.data.embedded.num_classes:
      raise ConfigError(
          f"config.model.num_classes={m.num_classes} but the embedded dataset "
          "(config.data.dataset is empty) has config.data.embedded.num_classes="
          f"{config.data.embedded.num_classes}: use the `demo` variant (e.g. "
          "configs/fusion.py:demo), or set config.data.dataset to a built dataset such as "
          "ntu_rgbd/ntu60_xsub")
