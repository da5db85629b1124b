r"""Chooses each method's loss weights on the validation split, then reports
the choice on the test queries.

    python -m launch.tune --config=configs/digits.py:method=ssb_vae+phs_gs \
        --config.tune.candidates=8 --config.tune.levels='(0.1,1.0)' \
        --config.tune.search=alpha,gamma --workdir=runs/tune_digits
    python -m launch.main --config=configs/snippets.py:grid=runs/tune_snip/weights.csv \
        --workdir=runs/snip_tuned          # any sweep can take the weights file

The search (config.tune: candidates, seeds, levels, ranges, metric,
halving) trains every candidate x seed x level of a method as one program
on the training split and scores it with the validation items as queries,
by tune.metric ("auto": p@K with K fitted to the corpus, printed below);
the test split is read only after the choice, by the sweep of the chosen
weights in WORKDIR/final. Writes candidates.csv, weights.csv (the released
weights' columns), search.json and a figure of the validation metric
against each weight. Re-running the same command resumes (finished rounds
and methods are kept); --restart discards the previous tune.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from hashvae.store import lock, results, workdir
from hashvae.sweep import experiment
from hashvae.tuning import tune, tune_outputs
from hashvae.tuning import tune_space as space
from launch import cpu_devices, errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the outputs.")
_RESTART = flags.DEFINE_bool("restart", False, "Discard a previous tune in the "
                             "workdir instead of resuming it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
  cpu_devices.apply()  # before any computation
  config, folder = _CONFIG.value, _WORKDIR.value
  lock.check_free(folder)  # a second process stops before loading anything
  space.check(config)
  dataset = experiment.checked_dataset(config)  # before touching the workdir
  with lock.hold(folder):
    if _RESTART.value:
      tune.restart(folder)
    workdir.prepare(folder, config.to_dict(), restart=_RESTART.value,
                    runtime=experiment.runtime(config))
    found, sweep = tune.run_tune(config, dataset, folder, restart_final=_RESTART.value)
  metric = found.metric  # tune.metric, resolved for the data ("auto": p@K)
  print(f"validation {metric}, mean over seeds {tuple(config.tune.seeds)}:")
  for r in tune_outputs.comparison(found, metric):
    early = (f" after {r['config_epochs']} epochs" if r["config_epochs"] < r["epochs"]
             else "")
    own = (f" (config's weights, candidate {r['config_candidate']}: {r['config']:.4f}{early})"
           if r["config_candidate"] >= 0 else "")
    print(f"  {r['method']:<14} level {r['level']:<5g} chosen candidate {r['candidate']:>3}: "
          f"{r['chosen']:.4f}{own}")
  print(f"test, the chosen weights (seeds {tuple(config.seeds)}):")
  print(results.summary_text(sweep.rows, metric=metric))
  logging.info("wrote weights.csv and candidates.csv in %s, the test sweep in %s",
               folder, os.path.join(folder, "final"))


def cli(argv=None):
  errors.run(main, argv, on_interrupt="rerun the same command to resume the tune "
             "(finished rounds and methods are kept)")


if __name__ == "__main__":
  cli()
