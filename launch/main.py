"""Trains a sweep and writes config.json, results.csv and codes.npz.

    python -m launch.main --config=configs/digits.py --workdir=runs/digits
    python -m launch.main --config=configs/snippets.py:method=ssb_vae,bits=32 \
        --config.data.path=../shared/data/snippets --workdir=runs/snip32
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from hashvae import experiment, results

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the outputs.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, workdir = _CONFIG.value, _WORKDIR.value
  os.makedirs(workdir, exist_ok=True)
  results.write_json(os.path.join(workdir, "config.json"), config.to_dict())
  sweep = experiment.run_sweep(config)
  results.write_csv(os.path.join(workdir, "results.csv"), sweep.rows)
  results.write_npz(os.path.join(workdir, "codes.npz"),
                    query_codes=sweep.query_codes, db_codes=sweep.db_codes,
                    query_labels=sweep.query_labels, db_labels=sweep.db_labels)
  logging.info("wrote %s/{config.json,results.csv,codes.npz}", workdir)
  print(results.summary_text(sweep.rows, metric=f"p@{config.ks[0]}"))


if __name__ == "__main__":
  app.run(main)
