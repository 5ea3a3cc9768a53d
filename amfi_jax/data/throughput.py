r"""Data-path throughput: the TFDS build (samples/s) and the training pipeline (examples/s).

  python -m amfi_jax.data.throughput --data_dir=/tmp/amfi_throughput
  python -m amfi_jax.data.throughput --data_dir=/tmp/t --config=ntu60_xview --build_workers=2 \
      --batch_size=32 --num_batches=30

Generates a small synthetic NTU dataset (`amfi_jax.data.synthetic`, 320x180 videos) under
`DATA_DIR/raw`, builds it with the official clip geometry (K=16, S=112 unless overridden) into
`DATA_DIR` (rebuilt every run), then iterates the training pipeline. Prints one JSON object per
line: stage 'generate', 'build', then 'train_pipeline' for RGB+skeleton with and without
augmentation and for skeleton only.
Numbers from generated 320x180 videos understate the cost of real 1080p decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence

import tensorflow_datasets as tfds

from amfi_jax.data import pipeline, synthetic, tfds_ntu


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


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", required=True, help="scratch dir for raw files and the build")
  parser.add_argument("--config", default="ntu60_xsub", help="official NTU config to derive from")
  parser.add_argument("--clip_length", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=112)
  parser.add_argument("--performers", type=int, default=4, help="synthetic performers 1..N")
  parser.add_argument("--build_workers", type=int, default=0, help="0 = all CPUs")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--num_batches", type=int, default=20)
  parser.add_argument("--num_threads", type=int, default=4, help="pipeline read threads")
  args = parser.parse_args(argv)

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
  config = tfds_ntu.custom_config(args.config, name=f"{args.config}_throughput", manual_dir=raw,
                                  clip_length=args.clip_length, image_size=args.image_size,
                                  validation_performers=(2,), num_workers=args.build_workers)
  builder = tfds_ntu.NtuRgbd(config=config, data_dir=data_dir)
  if builder.data_path.exists():
    shutil.rmtree(builder.data_path)
    builder = tfds_ntu.NtuRgbd(config=config, data_dir=data_dir)
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


if __name__ == "__main__":
  sys.exit(main())
