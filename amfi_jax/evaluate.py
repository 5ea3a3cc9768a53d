"""Re-evaluates the best checkpoint of every finished stage of a workdir.

  python -m amfi_jax.evaluate --workdir=DIR [--split=test] [--stages=rgb,skeleton,fusion]

Prints top-1, top-5, mean class accuracy and loss per stage. A stage counts as trained when it
finished (`workdir.StageDir.is_finished`, as for `predict`); `--stages` may name an interrupted
one, whose best checkpoint so far is evaluated.
"""

from __future__ import annotations

import jax
from absl import flags

from amfi_jax import cli, parallel, workdir as workdir_lib
from amfi_jax.data import datasets
from amfi_jax.errors import FlagError, MissingFileError
from amfi_jax.evaluation import reports
from amfi_jax.monitoring import logs
from amfi_jax.training import evaluation
from amfi_jax.training import setup as stage_setup
from amfi_jax.training.steps import make_eval_step



def evaluate_workdir(workdir: str, split: str = "test", stages=None) -> dict:
  """{stage: EvalResult} for the best checkpoint of each requested, trained stage."""
  run = workdir_lib.RunDir(workdir)
  config = run.load_config()
  for name in stages or ():
    if name not in config.stages:
      raise FlagError(f"--stages: {name!r} is not a stage of this run ({list(config.stages)})")
  stages = list(stages or run.finished_stages(config.stages))
  if not stages:
    raise MissingFileError(f"No finished stage in {run.path}")
  dataset = datasets.prepare(config.data, run.data)
  try:  # any TFDS split expression, e.g. test[:100] or train+validation
    source = dataset.source(split)
  except ValueError as e:
    raise FlagError(f"--split={split}: {e}") from None
  mesh = parallel.make_mesh(config.mesh.data, config.mesh.model)
  results = {}
  for name in stages:
    setup = stage_setup.setup_stage(config, name, dataset, mesh)
    state, step = stage_setup.restore_best(run, setup)
    result = evaluation.evaluate(
        make_eval_step(setup.stage, setup.layout), state, source,
        stage=setup.stage, data_cfg=config.data, batch_size=setup.scfg.eval_batch_size,
        mesh=mesh, class_names=dataset.class_names)
    results[name] = {"best_step": step, "result": result}
  return results


def main(argv):
  del argv
  logs.quiet_library_logs()
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
  cli.run(main)
