"""TFDS entry point for 2-D pose pickles; the builder lives in
`amfi_jax.data.builders.pose_pickle_builder`.

  python -m amfi_jax.data.build data_builders/pose_pickle --config=ntu60_2d_xsub \
      --manual_dir=DIR_WITH_ntu60_hrnet.pkl --data_dir=~/tensorflow_datasets

(`tfds build data_builders/pose_pickle ...` takes the same arguments where TensorFlow is
installed.) The subclass exists because TFDS loads exactly one builder class *defined* in this
module.
"""

from __future__ import annotations

from amfi_jax.data.builders import pose_pickle_builder


class Builder(pose_pickle_builder.PosePickle):
  """2-D pose pickles (see `amfi_jax.data.builders.pose_pickle_builder.PosePickle`)."""
