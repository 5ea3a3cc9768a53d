"""The TFDS builders. Importing this package registers all of them with TFDS, so that their
names (`ntu_rgbd/ntu60_xsub`, `utd_mhad/skeleton_depth`, `pose_pickle/ntu60_2d_xsub`) resolve
wherever one of them is imported (`amfi_jax.data.build`, `datasets`, `pipeline`)."""

from amfi_jax.data.builders import ntu_rgbd_builder  # noqa: F401  pylint: disable=unused-import
from amfi_jax.data.builders import pose_pickle_builder  # noqa: F401  pylint: disable=unused-import
from amfi_jax.data.builders import utd_mhad_builder  # noqa: F401  pylint: disable=unused-import
