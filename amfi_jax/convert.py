"""Converts PyTorch weights of a stream into an Orbax checkpoint usable as `config.init_from`.

  python -m amfi_jax.convert --source=torchvision_r3d18 --input=r3d_18-b3b3357e.pth --output=DIR
  python -m amfi_jax.convert --source=agcn_reference --input=ntu_cv_agcn_joint.pt --output=DIR

`.npz` and `.safetensors` inputs need no torch. Then train with e.g.
`--config.init_from.rgb=DIR`.
"""

from __future__ import annotations

import os

from absl import flags

from amfi_jax import cli, weights
from amfi_jax.errors import FlagError

_SOURCE = flags.DEFINE_enum("source", None, list(weights.SOURCES), "Architecture of the weights.")
_INPUT = flags.DEFINE_string("input", None, "state_dict file (.pth, .pt, .npz, .safetensors).")
_OUTPUT = flags.DEFINE_string("output", None, "Directory for the Orbax checkpoint (must be new).")


def convert(source: str, input_path: str, output_dir: str) -> str:
  tensors = weights.read_tensors(input_path)
  model = weights.build_stream_for(source, tensors)
  weights.import_state_dict(model, tensors, source)
  info = {"source": source, "input": input_path, "num_classes": int(tensors["fc.weight"].shape[0])}
  return weights.save_stream(output_dir, model, info=info)


def check_output(path: str) -> None:
  """--output must be a new directory (or an empty one), checked before any file is read."""
  if os.path.isfile(path):
    raise FlagError(f"--output={path} is a file; name a new directory")
  if os.path.isdir(path) and os.listdir(path):
    raise FlagError(f"--output={path} is a non-empty directory; name a new directory")


def main(argv):
  del argv
  check_output(_OUTPUT.value)
  path = convert(_SOURCE.value, _INPUT.value, _OUTPUT.value)
  print(f"Wrote {_SOURCE.value} weights from {_INPUT.value} to {path}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["source", "input", "output"])
  cli.run(main)
