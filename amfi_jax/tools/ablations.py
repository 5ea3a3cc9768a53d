"""The paper's ablations (Tables 3–6) on trained runs, as mean ± std over seeds.

  python -m amfi_jax.tools.ablations --workdirs=runs/utd_s0,runs/utd_s1,runs/utd_s2 \
      [--output=runs/ablations.md]

Each workdir is a finished three-stage run (one seed), e.g. of `configs/utd_mhad.py`. Table 4
(one stream vs fusion) is read from the runs' results. Tables 3 (fusion kind), 5 (λ of L_gate)
and 6 (which modality decides the gate) retrain only the fusion head of each run, on its frozen
best streams and their cached features (`config.train.fusion.cache_features`), in
`WORKDIR/ablations/<variant>/`, under the run's own protocol (the streams' features computed once
per run, not once per variant); finished variants are reused, so the command resumes. Prints a
Markdown table (and writes it to --output).
"""

from __future__ import annotations

import json
import os
import statistics
import time

import ml_collections
from absl import app, flags, logging

from amfi_jax import cli, configlib, distributed, workdir as workdir_lib
from amfi_jax.evaluation import reports
from amfi_jax.monitoring import logs
from amfi_jax.training import feature_cache, loop

# (table, row label, config changes of the fusion head). The paper's defaults: AMFI head,
# λ = 1, the skeleton decides the gate.
VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("3", "average", {"kind": "average"}),
    ("3", "multiply", {"kind": "multiply"}),
    ("3", "max", {"kind": "max"}),
    ("3", "concat", {"kind": "concat"}),
    ("3", "AMFI", {"kind": "amfi"}),
    ("5", "λ = 1", {"kind": "amfi", "gate_weight": 1.0}),
    ("5", "λ = 1.5", {"kind": "amfi", "gate_weight": 1.5}),
    ("5", "λ = 3", {"kind": "amfi", "gate_weight": 3.0}),
    ("5", "λ = 5", {"kind": "amfi", "gate_weight": 5.0}),
    ("6", "skeleton decides", {"kind": "amfi", "decision": "skeleton"}),
    ("6", "RGB/depth decides", {"kind": "amfi", "decision": "rgb"}),
)
STREAM_ROWS = (("rgb", "RGB/depth only"), ("skeleton", "Skeleton only"),
               ("fusion", "Fusion (the run's fusion stage)"))


def variant_name(changes: dict) -> str:
  return "_".join(f"{k}={v}" for k, v in sorted(changes.items()))


def effective_changes(run: workdir_lib.RunDir, changes: dict) -> dict:
  """The variant's settings that differ from the run's own fusion head. Empty: the variant IS
  the run's fusion stage (e.g. AMFI, λ = 1 and "skeleton decides" under the paper's defaults),
  whose result is read instead of training the same head again; equal variants share a
  directory."""
  fusion = run.recorded_config()["model"]["fusion"]
  return {k: v for k, v in changes.items() if fusion.get(k) != v}


def variant_config(run: workdir_lib.RunDir, changes: dict) -> ml_collections.ConfigDict:
  """The run's config training only the fusion head, with `changes`, on cached features."""
  config = ml_collections.ConfigDict(run.recorded_config())
  config.stages = ("fusion",)
  for stream in workdir_lib.STREAM_STAGES:
    config.init_from[stream] = run.stage(stream).best_stream
  for key, value in changes.items():
    config.model.fusion[key] = value
  config.train.fusion.augment = False
  config.train.fusion.cache_features = True
  configlib.validate(config)
  return config


def share_data(run: workdir_lib.RunDir, variant_dir: str) -> None:
  """The variant reads the dataset the run generated or built in its own data/ (the embedded
  one, or one built from config.data.manual_dir) through a link, instead of building it again."""
  variant = workdir_lib.RunDir(variant_dir)
  if os.path.isdir(run.data) and not os.path.lexists(variant.data):
    os.makedirs(variant.path, exist_ok=True)
    os.symlink(run.data, variant.data)


def check_runs(runs: list[workdir_lib.RunDir]) -> None:
  """Every run must have finished its stream stages (before any long work starts)."""
  for run in runs:
    missing = [s for s in workdir_lib.STAGES if not run.stage(s).is_finished()]
    if missing:
      raise ValueError(f"--workdirs: {run.path} has not finished stage(s) {missing}; train it "
                       "with `python -m amfi_jax.main` first")


def collect(runs: list[workdir_lib.RunDir]) -> list[dict]:
  """Rows {table, label, values (test top-1 per run), protocol}: Table 4 from the runs'
  results, Tables 3, 5 and 6 by training each variant's fusion head."""
  rows = []
  for stage, label in STREAM_ROWS:
    results = [run.stage(stage).read_result() for run in runs]
    rows.append({"table": "4", "label": label, "values": [r["test"]["top1"] for r in results],
                 "protocol": results[0].get("protocol", results[0].get("selected_on"))})
  # Every variant of a run reads the same frozen streams: their features are computed once.
  shared = {run.path: feature_cache.Shared() for run in runs}
  for table, label, changes in VARIANTS:
    values, protocol = [], None
    for run in runs:
      start = time.time()
      effective = effective_changes(run, changes)
      if effective:
        variant_dir = os.path.join(run.path, "ablations", variant_name(effective))
        share_data(run, variant_dir)
        result = loop.train_and_evaluate(variant_config(run, effective), variant_dir,
                                         shared_features=shared[run.path])["fusion"]
      else:
        result = run.stage("fusion").read_result()
      logging.info("%s %s: test top-1 %.4f (%.0f s)", run.path, label, result["test"]["top1"],
                   time.time() - start)
      values.append(result["test"]["top1"])
      protocol = result.get("protocol")
    rows.append({"table": table, "label": label, "values": values, "protocol": protocol})
  return rows


def format_table(rows: list[dict], runs: list[workdir_lib.RunDir]) -> str:
  """Markdown: table, row, test top-1 mean ± std over the runs, and each run's value."""
  out = [f"Test top-1 (%), mean ± std over {len(runs)} run(s): "
         + ", ".join(run.path for run in runs),
         "", "| table | row | top-1 mean ± std | per run | protocol |", "|---|---|---|---|---|"]
  for row in rows:
    values = [100 * v for v in row["values"]]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    protocol = reports.SELECTION_PROTOCOLS.get(row["protocol"], row["protocol"])
    out.append(f"| {row['table']} | {row['label']} | {statistics.mean(values):.2f} ± {std:.2f} "
               f"| {' / '.join(f'{v:.2f}' for v in values)} | {protocol} |")
  return "\n".join(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logs.quiet_library_logs()
  distributed.start(_DISTRIBUTED_SETTINGS)
  runs = [workdir_lib.RunDir(w) for w in flags.FLAGS.workdirs]
  check_runs(runs)
  rows = collect(runs)
  table = format_table(rows, runs)
  print(table)
  if flags.FLAGS.output:
    with open(flags.FLAGS.output, "w") as f:
      f.write(table + "\n")
    with open(flags.FLAGS.output + ".json", "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  flags.DEFINE_list("workdirs", None, "Finished runs, one per seed.")
  flags.DEFINE_string("output", "", "Also write the Markdown table here (and its rows as .json).")
  flags.mark_flags_as_required(["workdirs"])
  _DISTRIBUTED_SETTINGS = distributed.define_flags()
  cli.run(main)
