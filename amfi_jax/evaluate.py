"""Re-evaluates the best checkpoint of every finished stage of a workdir.

  python -m amfi_jax.evaluate --workdir=DIR [--split=test] [--stages=rgb,skeleton,fusion]

Prints top-1, top-5, mean class accuracy and loss per stage; with `--write_reports` the
confusion matrix, t-SNE and per-sample scores of that split are (re)written in `DIR/<stage>/`.
"""

from __future__ import annotations

import os

import jax
from absl import app, flags

from amfi_jax import parallel, run_context
from amfi_jax.data import datasets
from amfi_jax.evaluation import reports
from amfi_jax.training import evaluation, loop
from amfi_jax.training.steps import make_eval_step



def evaluate_workdir(workdir: str, split: str = "test", stages=None) -> dict:
  """{stage: EvalResult} for the best checkpoint of each requested, trained stage."""
  config, _ = run_context.load_run(workdir)
  dataset = datasets.prepare(config.data, workdir)
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  stages = list(stages or [s for s in config.stages
                           if os.path.isdir(os.path.join(loop.stage_dir(workdir, s),
                                                         "checkpoints"))])
  if not stages:
    raise FileNotFoundError(f"No trained stage in {workdir}")
  results = {}
  for name in stages:
    if name not in config.stages:
      raise ValueError(f"--stages: {name!r} is not a stage of this run ({list(config.stages)})")
    setup = loop.setup_stage(config, name, dataset, mesh)
    state, step = loop.restore_best(workdir, setup)
    result = evaluation.evaluate(
        make_eval_step(setup.stage, setup.layout), state, dataset.source(split),
        stage=setup.stage, data_cfg=config.data, batch_size=setup.scfg.eval_batch_size,
        mesh=mesh, class_names=dataset.class_names)
    results[name] = {"best_step": step, "result": result}
  return results


def main(argv):
  del argv
  run_context.quiet_library_logs()
  args = flags.FLAGS
  results = evaluate_workdir(args.workdir, args.split, args.stages)
  if jax.process_index() == 0:
    table = {name: reports.stage_entry(best_step=r["best_step"], selected_on="-",
                                       test=r["result"]) for name, r in results.items()}
    print(f"Split: {args.split}")
    print(reports.format_results_table(table).replace("test split", f"{args.split} split"))


def _define_flags():
  # Defined only when run as a program, so importing this module (tests, notebooks) is free
  # of global flag registrations.
  flags.DEFINE_string("workdir", None, "A workdir written by amfi_jax.main.")
  flags.DEFINE_string("split", "test", "Split to evaluate (test, validation, train...).")
  flags.DEFINE_list("stages", None, "Stages to evaluate (default: all finished).")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  _define_flags()
  app.run(main)
