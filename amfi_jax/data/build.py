"""`tfds build` without TensorFlow: the same command line, run through TFDS's own build code.

tensorflow-datasets 4.9.10's `tfds` entry point imports its `convert_format` command, which needs
TensorFlow at import time, so `tfds build ...` fails in a TF-free environment even though
building ArrayRecord datasets does not need TF. This launcher parses the identical `build`
arguments with TFDS's own parser and runs TFDS's own build command:

  python -m amfi_jax.data.build data_builders/ntu_rgbd --config=ntu60_xsub \
      --manual_dir=/data/ntu --data_dir=~/tensorflow_datasets
  python -m amfi_jax.data.build data_builders/utd_mhad --config=skeleton_depth \
      --manual_dir=/data/utd_mhad
  python -m amfi_jax.data.build ntu_rgbd --config='{"name": "tiny", "protocol": "xview",
      "clip_length": 8, "image_size": 32}' --manual_dir=... --data_dir=...

`--error_policy=skip` (ours; default `raise`) skips malformed samples and lists them in the
dataset's metadata, for any config, e.g. the published `ntu60_xsub`.

Datasets are given as a `data_builders/<name>` folder (as for `tfds build`) or by registered
name (`ntu_rgbd`, `utd_mhad`); `--config` also accepts a JSON object of config fields.
With TensorFlow installed, `tfds build` accepts the same arguments.
"""

from __future__ import annotations

import logging as python_logging
import os
import sys

from absl import app
from absl import logging
from tensorflow_datasets.scripts.cli import build as tfds_build
from tensorflow_datasets.scripts.cli import cli_utils

# Registers the builders, so they can be named without a data_builders path.
from amfi_jax.data.builders import common
from amfi_jax.data.builders import ntu_rgbd_builder  # noqa: F401  pylint: disable=unused-import
from amfi_jax.data.builders import utd_mhad_builder  # noqa: F401  pylint: disable=unused-import


def main(args: tfds_build.Args) -> None:
  # Same console logging as the `tfds` CLI: INFO lines through Python logging, without C++ noise.
  logging.use_python_logging(quiet=True)
  logging.set_verbosity(logging.INFO)
  handler = logging.get_absl_handler().python_handler
  handler.setFormatter(python_logging.Formatter("{levelname}[{filename}]: {message}", style="{"))
  args.execute()


def take_error_policy(argv: list[str]) -> list[str]:
  """Removes `--error_policy=raise|skip` (ours, not TFDS's) from argv and applies it to this
  build (`builders.common.error_policy`); returns the remaining arguments."""
  rest = []
  for i, arg in enumerate(argv):
    if arg.startswith("--error_policy="):
      policy = arg.split("=", 1)[1]
      if policy not in common.ERROR_POLICIES:
        print(f"Error: --error_policy={policy}: expected one of {list(common.ERROR_POLICIES)}",
              file=sys.stderr)
        sys.exit(2)
      os.environ[common.ERROR_POLICY_ENV] = policy
    else:
      rest.append(arg)
  return rest


def run() -> None:
  sys.argv = take_error_policy(sys.argv)
  app.run(main, flags_parser=cli_utils.make_flags_parser(
      tfds_build.Args, description="Build an amfi_jax TFDS dataset (tfds build, without TF). "
      "Also --error_policy=raise|skip: stop at the first malformed sample (default) or skip "
      "and list them, for any config."))


if __name__ == "__main__":
  run()
