"""Trains a sweep and writes config.json, results.csv and codes.npz.

    python -m launch.main --config=configs/digits.py --workdir=runs/digits
    python -m launch.main --config=configs/snippets.py:method=ssb_vae,bits=32 \
        --config.data.path=../shared/data/snippets --workdir=runs/snip32

Re-running the same command with the same workdir resumes the sweep from its
checkpoints (finished methods are not trained again).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from hashvae import experiment, results, workdir
from hashvae.config_check import ConfigError
from hashvae.data import DataError

# Mistakes in the config, the data or the workdir end with one clear line.
USER_ERRORS = (ConfigError, DataError, workdir.WorkdirError)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the outputs.")
_RESTART = flags.DEFINE_bool("restart", False, "Discard a previous sweep in the "
                             "workdir instead of resuming it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, folder = _CONFIG.value, _WORKDIR.value
  try:
    workdir.prepare(folder, config.to_dict(), restart=_RESTART.value)
    sweep = experiment.run_sweep(config, workdir=folder)
  except USER_ERRORS as e:
    sys.exit(f"error: {type(e).__name__}: {e}")
  results.write_csv(os.path.join(folder, "results.csv"), sweep.rows)
  results.write_npz(os.path.join(folder, "codes.npz"),
                    query_codes=sweep.query_codes, db_codes=sweep.db_codes,
                    query_labels=sweep.query_labels, db_labels=sweep.db_labels)
  logging.info("wrote %s/{config.json,results.csv,codes.npz}", folder)
  print(results.summary_text(sweep.rows, metric=f"p@{config.ks[0]}"))


if __name__ == "__main__":
  app.run(main)
