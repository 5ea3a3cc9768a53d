r"""Data-path throughput: the TFDS build (samples/s) and the training pipeline (examples/s).

  python -m amfi_jax.tools.throughput --data_dir=/tmp/amfi_throughput
  python -m amfi_jax.tools.throughput --data_dir=/tmp/t --config=ntu60_xview --build_workers=2 \
      --batch_size=32 --num_batches=30

Generates a small synthetic NTU dataset (`amfi_jax.data.generator.synthetic`, 320x180 videos) under
`DATA_DIR/raw`, builds it with the official clip geometry (K=16, S=112 unless overridden) into
`DATA_DIR` (rebuilt every run), then iterates the training pipeline. Prints one JSON object per
line: stage 'generate', 'build', then 'train_pipeline' for RGB+skeleton with and without
augmentation and for skeleton only.
Numbers from generated 320x180 videos understate the cost of real 1080p decoding.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence

import tensorflow_datasets as tfds
from absl import app, flags

from amfi_jax import cli
from amfi_jax.data import pipeline
from amfi_jax.data.builders import ntu_rgbd_builder
from amfi_jax.data.generator import synthetic


def _emit(record: dict) -> None:
  print(json.dumps(record), flush=True)


def measure_pipeline(source, *, modalities: Sequence[str], batch_size: int, num_batches: int,
                     augment: bool = True, warmup: int = 2, **kwargs) -> dict:
  """examples/s of `train_dataset` over `num_batches` batches after `warmup` batches."""
  it = iter(pipeline.train_dataset(source, batch_size=batch_size, seed=0, modalities=modalities,
                                   augment=augment, process_index=0, process_count=1, **kwargs))
  for _ in range(warmup):
    next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  seconds = time.perf_counter() - start
  return {"stage": "train_pipeline", "modalities": list(modalities), "augment": augment,
          "batch_size": batch_size,
          "batches": num_batches, "seconds": round(seconds, 3),
          "examples_per_s": round(batch_size * num_batches / seconds, 1)}


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  args = flags.FLAGS

  data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
  raw = os.path.join(data_dir, "raw")
  shutil.rmtree(raw, ignore_errors=True)
  synth = synthetic.SyntheticConfig(performers=tuple(range(1, args.performers + 1)),
                                    replications=(1,))
  start = time.perf_counter()
  names = synthetic.generate(raw, synth, verbose=False).sample_names
  seconds = time.perf_counter() - start
  _emit({"stage": "generate", "samples": len(names), "seconds": round(seconds, 3),
         "samples_per_s": round(len(names) / seconds, 2)})

  # Validation performer 2 gives all three splits for any protocol of the generated data.
  config = ntu_rgbd_builder.custom_config(args.config, name=f"{args.config}_throughput", manual_dir=raw,
                                  clip_length=args.clip_length, image_size=args.image_size,
                                  validation_performers=(2,), num_workers=args.build_workers)
  builder = ntu_rgbd_builder.NtuRgbd(config=config, data_dir=data_dir)
  if builder.data_path.exists():
    shutil.rmtree(builder.data_path)
    builder = ntu_rgbd_builder.NtuRgbd(config=config, data_dir=data_dir)
  tfds.disable_progress_bar()
  start = time.perf_counter()
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=raw))
  seconds = time.perf_counter() - start
  written = sum(split.num_examples for split in builder.info.splits.values())
  _emit({"stage": "build", "config": config.name, "samples": written,
         "clip": [args.clip_length, args.image_size], "workers": args.build_workers or
         os.cpu_count(), "seconds": round(seconds, 3),
         "samples_per_s": round(written / seconds, 2)})

  source = builder.as_data_source("train+validation+test")
  for modalities, augment in ((("rgb", "skeleton"), True), (("rgb", "skeleton"), False),
                              (("skeleton",), False)):
    _emit(measure_pipeline(source, modalities=modalities, augment=augment,
                           batch_size=args.batch_size, num_batches=args.num_batches,
                           num_threads=args.num_threads))
  return 0


def _define_flags():
  # Defined only when run as a program, so importing this module is free of global flags.
  flags.DEFINE_string("data_dir", None, "Scratch dir for raw files and the build.")
  flags.DEFINE_string("config", "ntu60_xsub", "Official NTU config to derive from.")
  flags.DEFINE_integer("clip_length", 16, "Frames per clip.")
  flags.DEFINE_integer("image_size", 112, "Side of the stored frames.")
  flags.DEFINE_integer("performers", 4, "Generated performers 1..N.")
  flags.DEFINE_integer("build_workers", 0, "Build processes (0 = all CPUs).")
  flags.DEFINE_integer("batch_size", 32, "Pipeline batch size.")
  flags.DEFINE_integer("num_batches", 20, "Batches to time.")
  flags.DEFINE_integer("num_threads", 4, "Pipeline read threads.")
  flags.mark_flags_as_required(["data_dir"])


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
