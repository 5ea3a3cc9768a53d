"""TFDS entry point for NTU RGB+D 60/120; the builder lives in `amfi_jax.data.builders.ntu_rgbd_builder`.

  python -m amfi_jax.data.build data_builders/ntu_rgbd --config=ntu60_xsub \
      --manual_dir=/data/ntu --data_dir=~/tensorflow_datasets

(`tfds build data_builders/ntu_rgbd ...` takes the same arguments where TensorFlow is installed.)
The subclass exists because TFDS loads exactly one builder class *defined* in this module.
"""

from __future__ import annotations

from amfi_jax.data.builders import ntu_rgbd_builder


class Builder(ntu_rgbd_builder.NtuRgbd):
  """NTU RGB+D 60 / 120 (see `amfi_jax.data.builders.ntu_rgbd_builder.NtuRgbd`)."""
