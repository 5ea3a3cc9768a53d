"""TFDS entry point for UTD-MHAD; the builder lives in `amfi_jax.data.tfds_utd_mhad`.

  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=/data/utd_mhad --data_dir=~/tensorflow_datasets

(`tfds build data_builders/utd_mhad ...` takes the same arguments where TensorFlow is installed.)
The subclass exists because TFDS loads exactly one builder class *defined* in this module.
"""

from __future__ import annotations

from amfi_jax.data import tfds_utd_mhad


class Builder(tfds_utd_mhad.UtdMhad):
  """UTD-MHAD (see `amfi_jax.data.tfds_utd_mhad.UtdMhad`)."""
