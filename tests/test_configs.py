"""Every config file with every variant it documents: valid, and its model takes the dataset's
inputs (abstractly, at full size)."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from amfi_jax import configlib
from amfi_jax.data import datasets
from amfi_jax.data.builders import ntu_rgbd_builder, pose_pickle_builder, utd_mhad_builder
from amfi_jax.data.generator import synthetic
from amfi_jax.data.preprocessing import clips
from amfi_jax.models import build_model
from amfi_jax.training.stages import make_stage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def _module(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cases():
  for path in CONFIG_FILES:
    module = _module(path)
    name = os.path.basename(path)
    yield pytest.param(module, None, id=f"{name}")
    for variant in module.VARIANTS:
      example = configlib.VARIANTS[variant][1]
      arg = variant if example is None else f"{variant}={example}"
      yield pytest.param(module, arg, id=f"{name}:{arg}")
    if "demo" in module.VARIANTS and "bones" in module.VARIANTS:
      yield pytest.param(module, "demo,bones", id=f"{name}:demo,bones")


def _input_shapes(config) -> dict[str, tuple[int, ...]]:
  """One example's input shapes as the configured dataset stores them."""
  d, m = config.data, config.model
  channels = configlib.SKELETON_STREAM_CHANNELS[d.skeleton_stream]
  rgb_channels = configlib.RGB_STREAM_CHANNELS[d.rgb_modality][0]
  if d.dataset.startswith("utd_mhad"):
    configs = {c.name: c for c in utd_mhad_builder.UtdMhad.BUILDER_CONFIGS}
    built = configs[d.dataset.split("/")[1]]
    k, s, t, v = built.clip_length, built.image_size, built.max_frames, 20
    if d.rgb_modality == "depth":
      rgb_channels = clips.DEPTH_VIEW_CHANNELS[built.depth_views]
  elif d.dataset.startswith("ntu_rgbd"):
    configs = {c.name: c for c in ntu_rgbd_builder.NtuRgbd.BUILDER_CONFIGS}
    built = configs[d.dataset.split("/")[1]]
    k, s, t, v = built.clip_length, built.image_size, built.max_frames, 25
  elif d.dataset.startswith("pose_pickle"):
    configs = {c.name: c for c in pose_pickle_builder.PosePickle.BUILDER_CONFIGS}
    built = configs[d.dataset.split("/")[1]]
    k, s, t, v = 16, 112, built.max_frames, 17  # poses only: the RGB shape goes unused
  else:
    assert not d.dataset, f"no shapes known for {d.dataset!r}"
    e = d.embedded
    k, s, t, v = e.clip_length, e.image_size, e.max_frames, 25
  t = d.skeleton_frames or t  # resampled when read
  return {d.rgb_modality: (k, s, s, rgb_channels),
          "skeleton": (channels, t, v, m.skeleton.num_persons)}


def test_every_variant_is_named_in_configlib():
  for path in CONFIG_FILES:
    assert set(_module(path).VARIANTS) <= set(configlib.VARIANTS), path


@pytest.mark.parametrize("module,arg", list(_cases()))
def test_config_validates_and_its_model_takes_the_datasets_inputs(module, arg):
  config = module.get_config(arg)
  if not config.data.dataset and config.model.num_classes == 60:
    # The paper's settings: NTU-60 (the embedded dataset has other classes; `validate` says so).
    with pytest.raises(ValueError, match=r"config\.data\.embedded\.num_classes"):
      configlib.validate(config)
    config.unlock()
    config.data.dataset = "ntu_rgbd/ntu60_xsub"
  configlib.validate(config)
  shapes = _input_shapes(config)
  for name in config.stages:
    stage = make_stage(name, config)
    batch = {k: jax.ShapeDtypeStruct((2,) + shapes[k], jnp.float32) for k in stage.inputs}

    def forward(batch, name=name, stage=stage):
      model = build_model(config.model, name)
      return stage.forward(nnx.view(model, use_running_average=True), batch).logits

    logits = jax.eval_shape(forward, batch)
    assert logits.shape == (2, config.model.num_classes), (name, arg)


def test_bones_sets_stream_and_channels_together():
  config = configlib.make_config(("skeleton",), "bones", ("bones",))
  assert config.data.skeleton_stream == "joint_bone"
  assert config.model.skeleton.in_channels == 6


def test_motion_sets_stream_and_channels_together():
  config = configlib.make_config(("skeleton",), "demo,motion", ("demo", "motion"))
  assert config.data.skeleton_stream == "joint_bone_motion"
  assert config.model.skeleton.in_channels == 12


def _set_field(config, field: str, value) -> None:
  """config.<field> = value, `field` a dotted path such as "data.skeleton_augment.crop"."""
  section, _, key = field.rpartition(".")
  target = config
  for part in filter(None, section.split(".")):
    target = target[part]
  target[key] = value


@pytest.mark.parametrize("field,value,named", [
    ("model.skeleton.in_channels", 6, ("config.data.skeleton_stream", "config.model.skeleton.in_channels")),
    ("data.skeleton_stream", "joint_bone", ("config.data.skeleton_stream", "config.model.skeleton.in_channels")),
    ("data.rgb_modality", "depth", ("config.data.rgb_modality", "config.model.rgb.in_channels")),
    ("model.rgb.in_channels", 1, ("config.data.rgb_modality", "config.model.rgb.in_channels")),
])
def test_validate_names_both_fields_of_an_inconsistent_pair(field, value, named):
  config = configlib.base_config(("skeleton",))
  _set_field(config, field, value)
  with pytest.raises(ValueError) as e:
    configlib.validate(config)
  for name in named:
    assert name in str(e.value)


@pytest.mark.parametrize("arg,message", [
    ("bones=yes", "takes no value"), ("fusion", "needs a value"), ("lambda=x", "not a number"),
    ("nonsense", "Unknown config variant"),
])
def test_malformed_variants_raise_naming_them(arg, message):
  with pytest.raises(ValueError, match=message):
    configlib.make_config(("fusion",), arg, ("bones", "fusion", "lambda"))


@pytest.mark.parametrize("shift", [-0.1, 0.5])
def test_clip_shift_outside_its_range_names_the_field(shift):
  config = configlib.base_config(("rgb",))
  config.data.clip_augment.shift = shift
  with pytest.raises(ValueError, match=r"config\.data\.clip_augment\.shift must be in"):
    configlib.validate(config)


def test_embedded_performers_with_every_split_validate():
  config = configlib.make_config(("rgb", "skeleton", "fusion"), "demo", ("demo",))
  config.data.embedded.performers = (1, 9, 3, 13)
  configlib.validate(config)


@pytest.mark.parametrize("field,value,message", [
    ("data.embedded.performers", (1, 2, 4, 5, 8, 9),
     r"config\.data\.embedded\.performers=\(1, 2, 4, 5, 8, 9\) leaves the test split empty"),
    ("data.embedded.performers", (3, 6, 7, 10),
     r"config\.data\.embedded\.performers=\(3, 6, 7, 10\) leaves the train and validation "
     r"splits empty"),
    ("data.embedded.performers", (1, 2, 3),
     r"config\.data\.embedded\.performers=\(1, 2, 3\) leaves the validation split empty"),
    ("data.embedded.performers", (1, 9, 9, 3),
     r"config\.data\.embedded\.performers must be distinct integer ids"),
    ("data.embedded.replications", (), r"config\.data\.embedded\.replications must be non-empty"),
    ("data.embedded.num_classes", 9, r"config\.data\.embedded\.num_classes must be in 1\.\.8"),
    ("data.embedded.image_size", 0, r"config\.data\.embedded\.image_size must be positive"),
    ("seed", -1, r"config\.seed must be an integer ≥ 0, got -1"),
    ("train.log_every_steps", 0, r"config\.train\.log_every_steps must be an integer ≥ 1"),
    ("data.skeleton_frames", -1, r"config\.data\.skeleton_frames must be an integer ≥ 0"),
    ("train.rgb.batch_size", 0, r"config\.train\.rgb\.batch_size must be an integer ≥ 1"),
    ("train.keep_latest", 0, r"config\.train\.keep_latest must be an integer ≥ 1"),
    ("train.rgb.decay_epochs", (-1,), r"config\.train\.rgb\.decay_epochs must be epochs > 0"),
    ("data.num_threads", -1, r"config\.data\.num_threads must be an integer ≥ 0"),
    ("model.rgb.blocks_per_stage", (1, 1), r"config\.model\.rgb\.blocks_per_stage must be four"),
    ("model.rgb.blocks_per_stage", (1, 0, 1, 1),
     r"config\.model\.rgb\.blocks_per_stage\[1\] must be an integer ≥ 1"),
    ("model.fusion.element_width", 0, r"config\.model\.fusion\.element_width must be an integer"),
    ("model.fusion.se_reduction", 0, r"config\.model\.fusion\.se_reduction must be an integer"),
    ("data.clip_augment.scale", (1.2, 0.8), r"config\.data\.clip_augment\.scale must be a zoom "
                                            r"range"),
    ("data.clip_augment.crop", 1.5, r"config\.data\.clip_augment\.crop must be in \[0, 1\]"),
    ("data.clip_augment.crop", 0.8, r"config\.data\.clip_augment\.crop needs "
                                    r"config\.data\.clip_frames > 0"),
    ("data.clip_augment.depth_offset", 1.0, r"config\.data\.clip_augment\.depth_offset must be "
                                          r"in \[0, 1\)"),
    ("data.skeleton_augment.crop", 1.5, r"config\.data\.skeleton_augment\.crop must be in "
                                        r"\[0, 1\]"),
    ("data.skeleton_augment.scale", 1.0, r"config\.data\.skeleton_augment\.scale must be in "
                                         r"\[0, 1\)"),
    ("data.skeleton_augment.jitter", -0.01, r"config\.data\.skeleton_augment\.jitter must be"),
    ("data.skeleton_augment.rotate", (10.0, 10.0), r"config\.data\.skeleton_augment\.rotate "
                                                   r"must be three angles"),
])
def test_fields_out_of_range_are_named(field, value, message):
  # Each failed minutes into a run (an embedded split left empty: TFDS's "Unknown split" after
  # generating and building; seed -1, log_every_steps 0, a fusion setting: once the fusion stage
  # built its model; a negative std of the jitter: in the input pipeline) or trained on
  # regardless (a negative skeleton_frames, a decay epoch ≤ 0).
  config = configlib.make_config(("rgb", "skeleton", "fusion"), "demo", ("demo",))
  _set_field(config, field, value)
  with pytest.raises(ValueError, match=message):
    configlib.validate(config)


def test_embedded_data_directories_are_named_by_the_generator_too():
  """Another generator seed or design revision never reuses a workdir's built data."""
  config = configlib.make_config(("rgb", "skeleton", "fusion"), "demo", ("demo",))
  generated, built = datasets._embedded_configs(config.data.embedded)
  config.data.embedded.seed += 1
  _, reseeded = datasets._embedded_configs(config.data.embedded)
  assert built.name.startswith("ntu60_xsub_") and reseeded.name != built.name
  assert generated.design_revision == synthetic.DESIGN_REVISION
  earlier = dataclasses.replace(generated, design_revision=synthetic.DESIGN_REVISION - 1)
  assert datasets._generated_digest(earlier) != datasets._generated_digest(generated)
  assert built.name.endswith("_" + datasets._generated_digest(generated))
  # How many processes generate the files does not change them, nor the names.
  assert (datasets._generated_digest(dataclasses.replace(generated, workers=8))
          == datasets._generated_digest(generated))
