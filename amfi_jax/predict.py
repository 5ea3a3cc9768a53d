"""Top-5 actions for raw NTU or UTD-MHAD samples, with the models of a trained or exported run.

One sample, printed:

  python -m amfi_jax.predict --workdir=DIR --skeleton=S001C001P001R001A011.skeleton \
      [--video=S001C001P001R001A011_rgb.avi]

One raw UTD-MHAD sample, with a run trained on UTD-MHAD (e.g. configs/utd_mhad.py; --video is
the sample's depth .mat, or its _color.avi for a run on RGB):

  python -m amfi_jax.predict --workdir=DIR --skeleton=a2_s2_t1_skeleton.mat \
      [--video=a2_s2_t1_depth.mat]

A folder (or a glob) of samples, written as JSONL:

  python -m amfi_jax.predict --workdir=DIR|--exported=ARTIFACT --inputs=DIR_OR_GLOB \
      --output=scores.jsonl [--top=5] [--batch_size=8] [--error_policy=skip|raise] [--overwrite]

With a video the fusion model is used (or the RGB model when only that stage was trained);
without one, the skeleton stream alone. In a folder, the video of `X.skeleton` is `X_rgb.avi`
beside it; of a UTD-MHAD `X_skeleton.mat`, `X_depth.mat` (or `X_color.avi` for a run on RGB)
beside it or in the release's `Depth/` (`RGB/`) folder beside `Skeleton/`, so --inputs can be
the release's `Skeleton` folder. An exported artifact is one stage: a skeleton artifact ignores
videos, a fusion or RGB artifact cannot predict a sample without one.

One sample of a 2-D pose pickle (PYSKL / MMAction2 format, COCO-17 keypoints), with the skeleton
model of a run trained on such poses (configs/ntu60_2d.py):

  python -m amfi_jax.predict --workdir=DIR --pose_pickle=ntu60_hrnet.pkl \
      --sample=S001C001P001R001A011

A skeleton stream, a sliding window at a time (`amfi_jax.streaming`):

  python -m amfi_jax.predict --stream --exported=skeleton.jaxexport|--workdir=DIR \
      --skeleton=FILE.skeleton|- [--fps=30] [--window=90] [--stride=15] [--top=5]

(for a UTD-MHAD run, --skeleton=X_skeleton.mat, or - with one frame per line: 60 numbers.)
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from typing import TextIO

import jax
import numpy as np
from absl import flags

from amfi_jax import cli, parallel, streaming, workdir as workdir_lib
from amfi_jax.data.builders import pose_pickle_builder, utd_mhad_builder
from amfi_jax.data.preprocessing import samples
from amfi_jax.data.preprocessing.samples import DATASET_NTU, DATASET_UTD_MHAD
from amfi_jax.data.readers import ntu, pose_pickle, utd_mhad
from amfi_jax.errors import FlagError, MissingFileError, UserError
from amfi_jax.evaluation.metrics import ranking
from amfi_jax.models import conv
from amfi_jax.monitoring import logs
from amfi_jax.monitoring.progress import ProgressBar
from amfi_jax.training import setup as stage_setup

ERROR_POLICIES = ("skip", "raise")
SKELETON_SUFFIX = ".skeleton"
VIDEO_SUFFIX = "_rgb.avi"  # NTU: S001C001P001R001A011.skeleton ↔ S001C001P001R001A011_rgb.avi
# The file that defines a sample of each dataset predict reads (its video: `SampleReader`).
SKELETON_SUFFIXES = {DATASET_NTU: SKELETON_SUFFIX,
                     DATASET_UTD_MHAD: utd_mhad.FILE_SUFFIXES["skeleton"]}
# The inputs of each stage's model; those with `rgb` need the sample's video.
STAGE_INPUTS = {"rgb": ("rgb",), "skeleton": ("skeleton",), "fusion": ("rgb", "skeleton")}


def choose_stage(run: workdir_lib.RunDir, stages, with_video: bool) -> str:
  """The finished stage that uses the given inputs: fusion (or RGB) with a video, else skeleton."""
  trained = run.finished_stages(stages)
  wanted = ("fusion", "rgb") if with_video else ("skeleton",)
  for stage in wanted:
    if stage in trained:
      return stage
  raise MissingFileError(f"{run.path} has no finished {' or '.join(wanted)} stage "
                         f"(finished: {trained or 'none'})")


def check_sample_files(skeleton_path: str, video_path: str | None) -> None:
  """--skeleton and --video must name files (checked before any model is loaded)."""
  for flag, path in (("--skeleton", skeleton_path), ("--video", video_path)):
    if path is not None and not os.path.isfile(path):
      problem = "is a directory" if os.path.isdir(path) else "not found"
      raise MissingFileError(f"{flag}={path}: {problem}; name one sample's file (--inputs "
                             "takes a folder of samples)")


# How each dataset names a sample's files: (dataset, parser of a path → sample name, pattern).
_SAMPLE_NAMES = (
    (DATASET_NTU, lambda path: str(ntu.parse_sample_name(path)), "SsssCcccPpppRrrrAaaa…"),
    (DATASET_UTD_MHAD, lambda path: utd_mhad.parse_utd_name(path).name,
     "a{action}_s{subject}_t{trial}_{kind}"),
)


def _sample_name(parse, path: str) -> str | None:
  try:
    return parse(path)
  except ValueError:  # DataFormatError is one too
    return None


def check_same_sample(skeleton_path: str, video_path: str | None) -> None:
  """The skeleton and the video must be of one sample, both named as NTU (S…C…P…R…A…) or as
  UTD-MHAD (a…_s…_t…) names them; checked before anything is read."""
  if video_path is None:
    return
  for dataset, parse, pattern in _SAMPLE_NAMES:
    skeleton_name = _sample_name(parse, skeleton_path)
    if skeleton_name is None:
      continue
    video_name = _sample_name(parse, video_path)
    if video_name is None:
      raise FlagError(f"--video={video_path}: not {'an' if dataset == DATASET_NTU else 'a'} "
                      f"{dataset} sample name ({pattern}) like --skeleton's; pass "
                      "--allow_mismatch to use the files anyway")
    if skeleton_name != video_name:
      raise FlagError(f"--skeleton is sample {skeleton_name} but --video is sample "
                      f"{video_name}; pass --allow_mismatch to combine them anyway")
    return
  patterns = " or ".join(f"{dataset} ({pattern})" for dataset, _, pattern in _SAMPLE_NAMES)
  raise FlagError(f"--skeleton={skeleton_path}: not a sample name of {patterns}; pass "
                  "--allow_mismatch to use the files anyway")


@dataclasses.dataclass(frozen=True)
class SampleReader:
  """How one run reads a raw sample's files into its model's inputs (a batch of one): NTU's
  `X.skeleton` and `X_rgb.avi`, or UTD-MHAD's `X_skeleton.mat` and `X_depth.mat` (or
  `X_color.avi` for a run on RGB), stored as the run's dataset stored them and fed as its
  pipeline fed the test split. Built from a workdir or an exported artifact (`sample_reader`),
  so that every mode of predict reads samples one way."""
  dataset: str  # DATASET_NTU | DATASET_UTD_MHAD
  sample_format: dict  # the run's (or artifact's) record of how its dataset was built
  rgb_modality: str
  skeleton_stream: str
  skeleton_frames: int = 0
  clip_frames: int = 0
  clip_views: int = 1
  utd_fields: dict | None = None  # a UTD-MHAD build config's `data_fields()`

  @property
  def skeleton_suffix(self) -> str:
    return SKELETON_SUFFIXES[self.dataset]

  @property
  def video_suffix(self) -> str:
    if self.dataset == DATASET_UTD_MHAD:
      return utd_mhad.FILE_SUFFIXES[self.rgb_modality]
    return VIDEO_SUFFIX

  def video_candidates(self, skeleton_path: str, name: str) -> list[str]:
    """Where sample `name`'s video is looked for, in order: beside its skeleton file; for
    UTD-MHAD also in the release's layout, where `Depth/` (or `RGB/`) sits beside `Skeleton/`."""
    folder = os.path.dirname(skeleton_path)
    file_name = name + self.video_suffix
    candidates = [os.path.join(folder, file_name)]
    if self.dataset == DATASET_UTD_MHAD:
      release_folder = utd_mhad.RELEASE_FOLDERS[self.rgb_modality]
      candidates.append(os.path.normpath(os.path.join(folder, os.pardir, release_folder,
                                                      file_name)))
    return candidates

  def read(self, skeleton_path: str, video_path: str | None) -> dict[str, np.ndarray]:
    if self.dataset == DATASET_UTD_MHAD:
      features = utd_mhad_builder.stored_features(
          self.utd_fields, skeleton_path,
          video_path if self.rgb_modality == "depth" else None,
          video_path if self.rgb_modality == "rgb" else None)
    else:
      f = self.sample_format
      features = samples.read_ntu_sample(
          skeleton_path, video_path, max_frames=f["max_frames"],
          clip_length=f.get("clip_length", 0), crop_size=f.get("crop_size", 0),
          image_size=f.get("image_size", 0))
    return self._batch_of_one(features, video_path is not None)

  def window_inputs(self, window) -> dict[str, np.ndarray]:
    """A stream's window of frames (`streaming.join`: an NTU SkeletonSequence, or UTD-MHAD
    (T, 20, 3) joints) as the batch of one that a skeleton file of those frames gives `read`."""
    max_frames = self.sample_format["max_frames"]
    if self.dataset == DATASET_UTD_MHAD:
      features = samples.utd_skeleton_features(window, max_frames, "the stream's window")
    else:
      features = samples.ntu_skeleton_features(window, max_frames)
    return self._batch_of_one(features, with_video=False)

  def _batch_of_one(self, features: dict, with_video: bool) -> dict[str, np.ndarray]:
    """Stored features → the model's inputs as the run's pipeline fed its test split, batch 1."""
    modalities = ("skeleton", self.rgb_modality) if with_video else ("skeleton",)
    inputs = samples.model_input(features, modalities, self.skeleton_stream,
                                 skeleton_frames=self.skeleton_frames,
                                 clip_frames=self.clip_frames, clip_views=self.clip_views)
    return {k: v[None] for k, v in inputs.items()}


def sample_reader(sample_format: dict, reading, source: str) -> SampleReader:
  """The reader of a run whose dataset was built as `sample_format` records (run.json's, or an
  artifact's preprocessing) and read as `reading` says (the run's `config.data`, or the
  artifact's preprocessing: rgb_modality, skeleton_stream, skeleton_frames, clip_frames,
  clip_views and, for UTD-MHAD, dataset). `source` names the run in errors."""
  builder = sample_format.get("builder")
  modality = reading.get("rgb_modality", "rgb")
  common = dict(sample_format=dict(sample_format), rgb_modality=modality,
                skeleton_stream=reading["skeleton_stream"],
                skeleton_frames=int(reading.get("skeleton_frames", 0)),
                clip_frames=int(reading.get("clip_frames", 0)),
                clip_views=int(reading.get("clip_views", 1)))
  if builder == utd_mhad_builder.UtdMhad.name:
    dataset = reading.get("dataset") or ""
    builder_name, _, config_name = dataset.partition("/")
    release = utd_mhad_builder.UtdMhad.builder_configs
    if builder_name != utd_mhad_builder.UtdMhad.name or config_name not in release:
      raise FlagError(f"{source}: its dataset {dataset!r} is not one of the UTD-MHAD builder's "
                      f"configs {sorted(release)}, so how its samples were stored is unknown "
                      "here" + ("" if dataset else " (an artifact exported before the dataset "
                                "was recorded: export it again)"))
    return SampleReader(DATASET_UTD_MHAD, utd_fields=release[config_name].data_fields(),
                        **common)
  if builder == pose_pickle_builder.PosePickle.name:
    raise FlagError(f"{source} was trained on the 2-D poses of a pose pickle; predict its "
                    "samples with --pose_pickle=FILE --sample=NAME")
  if modality != "rgb":
    raise FlagError(f"predict reads NTU samples (skeleton + RGB video); {source} trained on "
                    f"{modality!r} (evaluate such a run on its dataset: python -m "
                    "amfi_jax.evaluate --workdir=DIR)")
  return SampleReader(DATASET_NTU, **common)


def rank_one(run: workdir_lib.RunDir, config, stage_name: str, inputs: dict[str, np.ndarray],
             class_names) -> list[tuple[str, float]]:
  """The ranking of one sample (a batch of one) by a run's stage."""
  mesh = parallel.make_mesh(devices=jax.devices()[:1])
  stage, model, _ = stage_setup.restore_weights(config, run, stage_name, mesh)
  return ranking(np.asarray(stage.forward(model, inputs).logits)[0], class_names)


def predict(workdir: str, skeleton_path: str, video_path: str | None = None,
            allow_mismatch: bool = False) -> tuple[str, list[tuple[str, float]]]:
  """(stage used, [(class name, probability)] sorted by probability)."""
  if not allow_mismatch:
    check_same_sample(skeleton_path, video_path)
  check_sample_files(skeleton_path, video_path)
  run = workdir_lib.RunDir(workdir)
  info = run.read_run_info()
  config = run.load_config()
  # What the run was trained on decides how the files are read.
  reader = sample_reader(info["sample_format"], config.data, f"--workdir={workdir}")
  stage_name = choose_stage(run, config.stages, bool(video_path))
  inputs = reader.read(skeleton_path, video_path)
  return stage_name, rank_one(run, config, stage_name, inputs, info["class_names"])


# ---------------------------------------------------------------------------------------------
# One sample of a 2-D pose pickle.


def pose_pickle_inputs(pickle_path: str, sample: str, sample_format: dict,
                       skeleton_stream: str, skeleton_frames: int = 0) -> dict[str, np.ndarray]:
  """Sample `sample` of a pose pickle as a batch of one, preprocessed exactly as the pose-pickle
  builder and the pipeline do; the run must have trained on a pose-pickle dataset."""
  trained_on = sample_format.get("builder")
  if trained_on != pose_pickle_builder.PosePickle.name:
    raise FlagError(f"--pose_pickle needs a run trained on 2-D poses (a "
                    f"{pose_pickle_builder.PosePickle.name} dataset, e.g. configs/ntu60_2d.py); "
                    f"this one trained on {trained_on!r} data")
  _, max_frames, _, num_persons = sample_format["shapes"]["skeleton"]
  poses = pose_pickle.read_pose_pickle(pickle_path)
  features = poses.skeleton_features(sample, max_frames=max_frames, num_persons=num_persons)
  inputs = samples.model_input(features, ("skeleton",), skeleton_stream,
                               skeleton_frames=skeleton_frames)
  return {k: v[None] for k, v in inputs.items()}


def predict_pose_pickle(workdir: str, pickle_path: str, sample: str
                        ) -> tuple[str, list[tuple[str, float]]]:
  """(stage used, [(class name, probability)] sorted by probability) for one pickle sample."""
  run = workdir_lib.RunDir(workdir)
  info = run.read_run_info()
  config = run.load_config()
  stage_name = choose_stage(run, config.stages, with_video=False)
  inputs = pose_pickle_inputs(pickle_path, sample, info["sample_format"],
                              config.data.skeleton_stream, config.data.skeleton_frames)
  return stage_name, rank_one(run, config, stage_name, inputs, info["class_names"])


def _main_pose_pickle(args) -> None:
  others = [f"--{f}" for f in ("skeleton", "video", "inputs", "exported", "output", "stream")
            if getattr(args, f)]
  if others:
    raise FlagError(f"--pose_pickle predicts one sample of a pickle; it does not go with "
                    f"{', '.join(others)}")
  if not args.workdir or not args.sample:
    raise FlagError("--pose_pickle needs --workdir (a run trained on 2-D poses) and --sample "
                    "(the sample's frame_dir in the pickle)")
  stage, ranked = predict_pose_pickle(args.workdir, args.pose_pickle, args.sample)
  print(f"{args.sample}: {stage} model")
  for rank, (name, p) in enumerate(ranked[:args.top], 1):
    print(f"{rank}. {name:<40s} {100 * p:6.2f} %")


# ---------------------------------------------------------------------------------------------
# Batch prediction: a folder of raw samples → one JSONL line per sample.


@dataclasses.dataclass(frozen=True)
class RawSample:
  """One sample of --inputs: its name (the skeleton file's name without its suffix) and files."""
  name: str
  skeleton: str
  video: str | None  # its video (NTU) or depth / colour file (UTD-MHAD), when there is one


@dataclasses.dataclass
class BatchResult:
  """What `predict_batch` wrote: the predictions (in --inputs order) and the skipped samples."""
  predictions: list[dict]
  skipped: list[dict]
  output: str
  skipped_output: str


def skipped_path(output: str) -> str:
  """Where the samples that could not be read are listed: beside --output."""
  return output + ".skipped.jsonl"


def find_samples(inputs: str) -> tuple[str, list[str]]:
  """(dataset, sorted skeleton files) of a directory or a glob: NTU `.skeleton` files or
  UTD-MHAD `_skeleton.mat` files, one dataset's (checked before any model is read)."""
  wanted = " or ".join(SKELETON_SUFFIXES.values())
  if not inputs:
    raise FlagError(f"--inputs is empty; name a directory of samples' skeleton files ({wanted}) "
                    "or a glob of them")
  if os.path.isdir(inputs):
    candidates = [path for suffix in SKELETON_SUFFIXES.values()
                  for path in glob.glob(os.path.join(inputs, "*" + suffix))]
  else:
    candidates = glob.glob(inputs)
  found = {}
  for dataset, suffix in SKELETON_SUFFIXES.items():
    paths = sorted(p for p in candidates if p.endswith(suffix) and os.path.isfile(p))
    if paths:
      found[dataset] = paths
  if not found:
    if os.path.isdir(inputs):
      where = "in this directory"
    elif glob.has_magic(inputs):
      where = "match"
    else:
      where = "there: no such directory or file"
    raise FlagError(f"--inputs={inputs}: no {wanted} files {where}")
  if len(found) > 1:
    raise FlagError(f"--inputs={inputs}: holds both NTU ({SKELETON_SUFFIX}) and UTD-MHAD "
                    f"({SKELETON_SUFFIXES[DATASET_UTD_MHAD]}) samples; narrow it to one "
                    "dataset's with a glob")
  ((dataset, paths),) = found.items()
  return dataset, paths


def pair_samples(paths: list[str], reader: SampleReader, inputs: str) -> list[RawSample]:
  """Each skeleton file with its video (the file of `reader.video_suffix`), when present."""
  found, seen = [], {}
  for path in paths:
    name = os.path.basename(path)[:-len(reader.skeleton_suffix)]
    # The output is keyed by sample name: two files of one name would be two rows of one key.
    if name in seen:
      raise FlagError(f"--inputs={inputs}: sample {name} twice ({seen[name]} and {path}); "
                      "narrow the glob")
    seen[name] = path
    video = next((candidate for candidate in reader.video_candidates(path, name)
                  if os.path.isfile(candidate)), None)
    found.append(RawSample(name, path, video))
  return found


def check_batch_flags(*, workdir: str | None, exported: str | None, output: str, top: int,
                      batch_size: int, error_policy: str, overwrite: bool) -> None:
  """The flags alone, before any file is read."""
  if bool(workdir) == bool(exported):
    raise FlagError("pass exactly one of --workdir (a trained run) and --exported (an artifact "
                    f"of `python -m amfi_jax.export`); got {'both' if workdir else 'neither'}")
  if error_policy not in ERROR_POLICIES:
    raise FlagError(f"--error_policy={error_policy}: expected one of {list(ERROR_POLICIES)}")
  if top < 1:
    raise FlagError(f"--top={top}: expected at least 1")
  if batch_size < 1:
    raise FlagError(f"--batch_size={batch_size}: expected at least 1")
  if not output:
    raise FlagError("--output is empty; name the JSONL file to write")
  if os.path.isdir(output):
    raise FlagError(f"--output={output} is a directory; name the JSONL file to write")
  for path in (output, skipped_path(output)):
    if os.path.exists(path) and not overwrite:
      raise FlagError(f"--output={output}: {path} exists; pass --overwrite to replace it")


class WorkdirModels:
  """The finished stages of a trained workdir, each restored and compiled once, on first use."""

  def __init__(self, workdir: str):
    self.run = workdir_lib.RunDir(workdir)
    info = self.run.read_run_info()
    self.config = self.run.load_config()
    self.source = f"--workdir={workdir}"
    self.reader = sample_reader(info["sample_format"], self.config.data, self.source)
    self.class_names = list(info["class_names"])
    self._forwards = {}

  def stage_for(self, sample: RawSample) -> str:
    """The single-sample rule (`choose_stage`); a stage the run lacks is an error for all."""
    return choose_stage(self.run, self.config.stages, sample.video is not None)

  def logits(self, stage_name: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    if stage_name not in self._forwards:
      mesh = parallel.make_mesh(devices=jax.devices()[:1])
      stage, model, _ = stage_setup.restore_weights(self.config, self.run, stage_name, mesh)
      # jit caches one program per batch shape; batches are padded to one shape per stage.
      forward = jax.jit(lambda m, inputs: stage.forward(m, inputs).logits,
                        compiler_options=conv.step_compiler_options(mesh))
      self._forwards[stage_name] = lambda inputs: forward(model, inputs)
    return np.asarray(self._forwards[stage_name](batch), np.float32)


class ExportedModel:
  """An artifact of `amfi_jax.export`: its metadata is read at once, the program on first use."""

  def __init__(self, artifact: str):
    from amfi_jax import serving  # only this mode needs it

    self._serving = serving
    self.artifact = artifact
    metadata_file = serving.metadata_path(artifact)
    for path in (artifact, metadata_file):
      if not os.path.isfile(path):
        raise MissingFileError(f"--exported={artifact}: {path} not found; write it with "
                               "`python -m amfi_jax.export`")
    with open(metadata_file) as f:
      metadata = json.load(f)
    self.source = f"--exported={artifact}"
    self.reader = sample_reader(metadata["preprocessing"], metadata["preprocessing"],
                                self.source)
    self.stage = metadata["stage"]
    self.input_names = tuple(i["name"] for i in metadata["inputs"])
    self.class_names = list(metadata["class_names"])
    self._model = None

  def stage_for(self, sample: RawSample) -> str:
    del sample  # one artifact, one stage
    return self.stage

  def logits(self, stage_name: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    assert stage_name == self.stage, (stage_name, self.stage)
    if self._model is None:
      self._model = self._serving.load(self.artifact)
    return self._model(**{name: batch[name] for name in self.input_names})


def _read_sample(models, stage_name: str, sample: RawSample) -> dict[str, np.ndarray]:
  """The sample as a batch of one, read as the single-sample path reads it."""
  uses_video = "rgb" in STAGE_INPUTS[stage_name]
  reader = models.reader
  if uses_video and sample.video is None:
    looked = " or ".join(reader.video_candidates(sample.skeleton, sample.name))
    raise MissingFileError(f"{sample.skeleton}: the {stage_name} model needs the sample's "
                           f"{reader.video_suffix} file, not found at {looked}")
  return reader.read(sample.skeleton, sample.video if uses_video else None)


class _StageBatches:
  """Samples of one stage waiting for a full batch; each batch is padded to `size` rows (with
  copies of its last sample) so that every call of a stage has one shape: one compilation."""

  def __init__(self, size: int):
    self.size = size
    self.names: list[str] = []
    self.inputs: list[dict[str, np.ndarray]] = []

  def add(self, name: str, inputs: dict[str, np.ndarray]) -> bool:
    self.names.append(name)
    self.inputs.append(inputs)
    return len(self.names) == self.size

  def take(self) -> tuple[list[str], dict[str, np.ndarray]]:
    names, rows = self.names, self.inputs
    rows = rows + [rows[-1]] * (self.size - len(rows))
    batch = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    self.names, self.inputs = [], []
    return names, batch


def _write_jsonl_atomically(path: str, rows: list[dict]) -> None:
  """The whole file or nothing: an interrupted run never leaves half a file at `path`."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  os.replace(tmp, path)


def predict_batch(inputs: str, output: str, *, workdir: str | None = None,
                  exported: str | None = None, top: int = 5, batch_size: int = 8,
                  error_policy: str = "skip", overwrite: bool = False,
                  progress_stream: TextIO | None = sys.stderr) -> BatchResult:
  """Predicts every sample of `inputs` (a directory or a glob of NTU .skeleton files, or of
  UTD-MHAD _skeleton.mat files for a run trained on UTD-MHAD) and writes
  `output`: one JSONL line per sample, {"sample", "stage", "top": [[class, probability], ...]}.

  A sample the readers cannot read (a `UserError`: malformed file, no frames, truncated video)
  is skipped and listed in `skipped_path(output)` with `error_policy="skip"`, and stops the run
  with `error_policy="raise"` (nothing written). The flags, the inputs and the stages each
  sample needs are checked before any model is loaded.
  """
  check_batch_flags(workdir=workdir, exported=exported, output=output, top=top,
                    batch_size=batch_size, error_policy=error_policy, overwrite=overwrite)
  dataset, paths = find_samples(inputs)
  models = WorkdirModels(workdir) if workdir else ExportedModel(exported)
  if dataset != models.reader.dataset:
    raise FlagError(f"--inputs={inputs}: {dataset} samples, but {models.source} reads "
                    f"{models.reader.dataset} samples ({models.reader.skeleton_suffix} files)")
  found = pair_samples(paths, models.reader, inputs)
  # Every stage a sample needs is known (and missing ones refused) before the first is loaded.
  planned = [(sample, models.stage_for(sample)) for sample in found]
  per_stage = {}
  for _, stage_name in planned:
    per_stage[stage_name] = per_stage.get(stage_name, 0) + 1
  # A batch no larger than the stage's share: a few samples need not pay for 8 rows each.
  pending = {s: _StageBatches(min(batch_size, n)) for s, n in per_stage.items()}

  predictions: dict[str, dict] = {}
  skipped: list[dict] = []

  def run_batch(stage_name: str) -> None:
    names, batch = pending[stage_name].take()
    logits = models.logits(stage_name, batch)
    for row, name in enumerate(names):
      predictions[name] = {"sample": name, "stage": stage_name,
                           "top": [list(p) for p in ranking(logits[row],
                                                            models.class_names)[:top]]}

  progress = ProgressBar(len(planned), enabled=progress_stream is not None,
                         stream=progress_stream or sys.stderr)
  with progress:
    for done, (sample, stage_name) in enumerate(planned, 1):
      try:
        sample_batch = _read_sample(models, stage_name, sample)
      except UserError as e:
        if error_policy == "raise":
          if sample.skeleton in str(e) or (sample.video and sample.video in str(e)):
            raise
          raise UserError(f"{sample.skeleton}: {e}") from e
        skipped.append({"sample": sample.name, "path": sample.skeleton, "reason": str(e)})
      else:
        if pending[stage_name].add(sample.name, sample_batch):
          run_batch(stage_name)
      progress.update(done, 1, skipped=len(skipped))
    for stage_name, waiting in pending.items():
      if waiting.names:
        run_batch(stage_name)

  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  rows = [predictions[s.name] for s, _ in planned if s.name in predictions]
  _write_jsonl_atomically(output, rows)
  skipped_file = skipped_path(output)
  if skipped:
    _write_jsonl_atomically(skipped_file, skipped)
  elif os.path.exists(skipped_file):
    os.remove(skipped_file)  # a list from an earlier run (--overwrite) would now be wrong
  return BatchResult(rows, skipped, output, skipped_file)


def _main_batch(args) -> None:
  if args.skeleton or args.video:
    raise FlagError("--skeleton/--video name one sample; --inputs names many (each skeleton "
                    "file with its video found beside it): pass one or the other")
  if not args.output:
    raise FlagError("--inputs needs --output, the JSONL file to write")
  result = predict_batch(args.inputs, args.output, workdir=args.workdir, exported=args.exported,
                         top=args.top, batch_size=args.batch_size,
                         error_policy=args.error_policy, overwrite=args.overwrite)
  for row in result.skipped:
    print(f"skipped {row['sample']}: {row['reason']}", file=sys.stderr)
  where = f" (listed in {result.skipped_output})" if result.skipped else ""
  print(f"{result.output}: {len(result.predictions)} predicted, {len(result.skipped)} "
        f"skipped{where}")


# ---------------------------------------------------------------------------------------------
# Streaming: skeleton frames as they arrive → the top actions of a sliding window.


def stream_predictor(*, workdir: str | None, exported: str | None, top: int
                     ) -> streaming.Predictor:
  """The skeleton model of a workdir or of a skeleton artifact, for `amfi_jax.streaming`."""
  if bool(workdir) == bool(exported):
    raise FlagError("--stream: pass exactly one of --workdir (a trained run) and --exported (a "
                    f"skeleton artifact); got {'both' if workdir else 'neither'}")
  if top < 1:
    raise FlagError(f"--top={top}: expected at least 1")
  models = WorkdirModels(workdir) if workdir else ExportedModel(exported)
  if exported and models.stage != "skeleton":
    raise FlagError(f"--stream reads skeleton frames only; {models.source} is the {models.stage} "
                    "model: export the skeleton stage")
  if workdir:
    choose_stage(models.run, models.config.stages, with_video=False)
  reader = models.reader
  return streaming.Predictor(lambda batch: models.logits("skeleton", batch), models.class_names,
                             reader.window_inputs, dataset=reader.dataset,
                             max_frames=reader.sample_format["max_frames"], top=top)


def _main_stream(args) -> None:
  if args.inputs is not None or args.video or args.output:
    raise FlagError("--stream reads one skeleton stream (--skeleton=FILE or - for standard "
                    "input); --inputs, --video and --output do not apply")
  if not args.skeleton:
    raise FlagError("--stream needs --skeleton: a .skeleton file (a UTD-MHAD run: a "
                    "_skeleton.mat) to replay, or - to read frames from standard input")
  predictor = stream_predictor(workdir=args.workdir, exported=args.exported, top=args.top)
  window = streaming.check_flags(args.window, args.stride, args.fps, predictor.max_frames)
  from_stdin = args.skeleton == streaming.STDIN
  source = "<stdin>" if from_stdin else args.skeleton
  # Standard input arrives as the producer writes it; a file is replayed at --fps.
  fps = 0.0 if from_stdin else args.fps
  # The source is opened (a missing or malformed file named) before the model compiles; frames
  # are read, and the replay's clock starts, only as the stream runs.
  if predictor.dataset == DATASET_UTD_MHAD:
    frames = streaming.timed(streaming.utd_frames(args.skeleton, sys.stdin), fps=fps)
  else:
    lines, has_header = streaming.open_lines(args.skeleton, sys.stdin)
    frames = streaming.replay(lines, source, fps=fps, has_header=has_header)
  predictor.warm_up()
  _, summary = streaming.run(
      frames, predictor, window=window, stride=args.stride, source=source, fps=args.fps,
      on_result=lambda result: print(streaming.format_result(result), flush=True))
  print(json.dumps(summary), flush=True)


def main(argv):
  del argv
  logs.quiet_library_logs()
  args = flags.FLAGS
  if args.pose_pickle is not None:
    _main_pose_pickle(args)
    return
  if args.stream:
    _main_stream(args)
    return
  if args.inputs is not None:
    _main_batch(args)
    return
  if args.exported or args.output:
    raise FlagError("--exported and --output go with --inputs (a folder or glob of samples; "
                    "one file is a glob too)")
  if not args.workdir or not args.skeleton:
    raise FlagError("pass --workdir and --skeleton (one sample), or --inputs and --output "
                    "(many)")
  stage, ranked = predict(args.workdir, args.skeleton, args.video, args.allow_mismatch)
  print(f"{os.path.basename(args.skeleton)}: {stage} model")
  for rank, (name, p) in enumerate(ranked[:args.top], 1):
    print(f"{rank}. {name:<40s} {100 * p:6.2f} %")


def _define_flags():
  # Defined only when run as a program (see amfi_jax.evaluate).
  flags.DEFINE_string("workdir", None, "A workdir written by amfi_jax.main.")
  flags.DEFINE_string("skeleton", None, "An NTU .skeleton file (one sample), or a UTD-MHAD "
                      "_skeleton.mat for a run trained on UTD-MHAD.")
  flags.DEFINE_string("video", None, "The sample's _rgb.avi (optional); for a UTD-MHAD run its "
                      "_depth.mat (or _color.avi if the run read RGB).")
  flags.DEFINE_integer("top", 5, "How many actions to print (or write, with --inputs).")
  flags.DEFINE_bool("allow_mismatch", False, "Combine a skeleton and a video whose sample names "
                    "differ (refused by default).")
  flags.DEFINE_string("inputs", None, "A directory of .skeleton files (or UTD-MHAD "
                      "_skeleton.mat files), or a glob of them: predict each (with "
                      f"X{VIDEO_SUFFIX} beside X{SKELETON_SUFFIX}, or X_depth.mat, when "
                      "present).")
  flags.DEFINE_string("exported", None, "With --inputs: an artifact of amfi_jax.export, "
                      "instead of --workdir.")
  flags.DEFINE_string("output", None, "With --inputs: the JSONL file to write (samples that "
                      "could not be read go to OUTPUT.skipped.jsonl).")
  flags.DEFINE_integer("batch_size", 8, "With --inputs: samples per model call.")
  flags.DEFINE_string("error_policy", "skip", "With --inputs: what an unreadable sample does: "
                      "skip (list it and go on) | raise (stop).")
  flags.DEFINE_bool("overwrite", False, "With --inputs: replace an existing --output.")
  flags.DEFINE_string("pose_pickle", None, "A 2-D pose pickle (PYSKL / MMAction2 format): "
                      "predict its sample --sample with a run trained on 2-D poses.")
  flags.DEFINE_string("sample", None, "With --pose_pickle: the sample's name (frame_dir).")
  flags.DEFINE_bool("stream", False, "Predict a sliding window of a skeleton stream: "
                    "--skeleton=FILE (replayed at --fps) or - (NTU frame blocks, or UTD-MHAD "
                    "lines of 60 numbers, on stdin).")
  flags.DEFINE_integer("window", None, "With --stream: frames per window (default "
                       f"{streaming.DEFAULT_WINDOW}, or the model's max_frames when fewer).")
  flags.DEFINE_integer("stride", streaming.DEFAULT_STRIDE, "With --stream: a window every "
                       "this many frames.")
  flags.DEFINE_float("fps", streaming.DEFAULT_FPS, "With --stream and a file: replay rate "
                     "(0: as fast as possible).")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
