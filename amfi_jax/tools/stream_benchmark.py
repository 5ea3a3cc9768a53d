r"""Real-time inference figures of exported models: a skeleton stream and fusion clips.

  python -m amfi_jax.tools.stream_benchmark --skeleton_artifact=skeleton.jaxexport \
      --skeleton=S001C001P001R001A011.skeleton [--fusion_artifact=fusion.jaxexport] \
      [--windows=20] [--window=90] [--stride=15] [--fps=0] [--calls=20]

Prints one JSON object per line. `skeleton_stream`: the frames of `--skeleton` played in a loop
as fast as they can be answered, or in real time at `--fps` (`amfi_jax.streaming`, the path of
`predict --stream`) for `--windows` windows after one warm-up: per-window latency p50 / p99
(parsing, preprocessing, the model; at `--fps` also any backlog), windows/s, the smallest
stride that keeps up with 30 fps (or `--fps`) and, at `--fps`, whether this stride does. `fusion_clip`: per-call
latency of the fusion artifact at batch 1 on random inputs of its shapes (`serving.latency`).
docs/deployment.md has the figures measured here.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from absl import flags

from amfi_jax import cli, predict, serving, streaming
from amfi_jax.errors import FlagError


def looped_blocks(skeleton_file: str, num_frames: int) -> list[str]:
  """`num_frames` frame blocks of a `.skeleton` file, its frames repeated in order, as lines."""
  with open(skeleton_file, encoding="latin-1") as f:
    blocks = list(streaming.frame_blocks(f, skeleton_file, has_header=True))
  if not blocks:
    raise FlagError(f"--skeleton={skeleton_file}: no frames")
  return [line for block in itertools.islice(itertools.cycle(blocks), num_frames)
          for line in block]


def skeleton_stream(artifact: str, skeleton_file: str, *, windows: int, window: int | None,
                    stride: int, fps: float = 0.0) -> dict:
  predictor = predict.stream_predictor(workdir=None, exported=artifact, top=5)
  window = streaming.check_flags(window, stride, fps, predictor.max_frames)
  predictor.warm_up()
  lines = looped_blocks(skeleton_file, window + (windows - 1) * stride)
  frames = streaming.replay(lines, skeleton_file, fps=fps, has_header=False)
  _, out = streaming.run(frames, predictor, window=window, stride=stride, source=skeleton_file,
                         fps=fps)
  return {"what": "skeleton_stream", "artifact": artifact, "window": window, **out}


def main(argv: Sequence[str]) -> None:
  del argv
  args = flags.FLAGS
  if args.windows < 1 or args.calls < 1:
    raise FlagError("--windows and --calls must be at least 1")
  print(json.dumps(skeleton_stream(args.skeleton_artifact, args.skeleton, windows=args.windows,
                                   window=args.window, stride=args.stride, fps=args.fps)),
        flush=True)
  if args.fusion_artifact:
    model = serving.load(args.fusion_artifact)
    record = serving.latency(model, batch_size=1, calls=args.calls, warmup=2)
    print(json.dumps({"what": "fusion_clip", "artifact": args.fusion_artifact, **record}),
          flush=True)


def _define_flags():
  flags.DEFINE_string("skeleton_artifact", None, "A skeleton artifact of amfi_jax.export.")
  flags.DEFINE_string("skeleton", None, "A .skeleton file whose frames make the stream.")
  flags.DEFINE_string("fusion_artifact", None, "A fusion artifact (optional).")
  flags.DEFINE_integer("windows", 20, "Windows to time after the warm-up.")
  flags.DEFINE_integer("window", None, f"Frames per window (default {streaming.DEFAULT_WINDOW}, "
                       "or the model's max_frames when fewer).")
  flags.DEFINE_integer("stride", streaming.DEFAULT_STRIDE, "Frames between windows.")
  flags.DEFINE_float("fps", 0.0, "Frames per second of the replay; 0: as fast as answered "
                     "(> 0: real time, so the latency includes any backlog).")
  flags.DEFINE_integer("calls", 20, "Fusion calls to time after two warm-up calls.")
  flags.mark_flags_as_required(["skeleton_artifact", "skeleton"])


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
