"""TFDS entry point for UTD-MHAD; the builder lives in `amfi_jax.data.builders.utd_mhad_builder`.

  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=/data/utd_mhad --data_dir=~/tensorflow_datasets

(`tfds build data_builders/utd_mhad ...` takes the same arguments where TensorFlow is installed.)
The subclass exists because TFDS loads exactly one builder class *defined* in this module.
"""

from __future__ import annotations

from amfi_jax.data.builders import utd_mhad_builder


class Builder(utd_mhad_builder.UtdMhad):
  """UTD-MHAD (see `amfi_jax.data.builders.utd_mhad_builder.UtdMhad`)."""
