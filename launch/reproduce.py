"""Runs the study's sweeps: every method of each (dataset, bits) cell.

    python -m launch.reproduce --dataset=snippets --bits=16 --workdir=runs/repro
    python -m launch.reproduce --dataset=snippets,newsgroups,tmc --bits=16,32 \
        --workdir=runs/repro --set='seeds=(0,1,2),epochs=30'

Each cell runs configs/<dataset>.py:method=all,bits=<bits> (released per-level
weights, 10 levels x 5 seeds, each method one vmapped program) in
WORKDIR/<dataset>_<bits>/, resumable like launch.main; finished cells are
skipped on a re-run. The merged summary.md, summary.tex and p_at_100.png go
to WORKDIR.
"""

import ast
import importlib
import os
import sys
import time

from absl import app, flags, logging

from hashvae import config_check, experiment, reports, results, sharding, workdir
from launch import cpu_devices

DATASETS = ("digits", "snippets", "newsgroups", "tmc", "cifar", "synthetic")

_DATASETS = flags.DEFINE_list("dataset", ["snippets"], f"Any of {DATASETS}.")
_BITS = flags.DEFINE_list("bits", ["16"], "Code lengths.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every cell's outputs.")
_DATA_PATH = flags.DEFINE_string("data_path", None, "Overrides config.data.path "
                                 "(one dataset only).")
_SET = flags.DEFINE_string("set", "", "Config overrides for every cell, "
                           "e.g. 'epochs=5,seeds=(0,1)' (Python literals).")
_METHOD = flags.DEFINE_string("method", "all", "Methods of each cell (a+b or all).")
flags.mark_flags_as_required(["workdir"])


def parse_overrides(text: str) -> dict:
  """'a=1,b.c=(0,1)' -> {'a': 1, 'b.c': (0, 1)} (commas inside brackets kept)."""
  out, depth, item = {}, 0, ""
  for ch in text + ",":
    depth += ch in "([" and 1 or (ch in ")]" and -1 or 0)
    if ch == "," and depth == 0:
      if item.strip():
        key, sep, value = item.partition("=")
        if not sep:
          raise app.UsageError(f"--set item {item!r}: expected key=value")
        try:
          out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
          out[key.strip()] = value.strip()  # a bare string
      item = ""
    else:
      item += ch
  return out


def cell_config(dataset: str, bits: int):
  if dataset not in DATASETS:
    raise app.UsageError(f"unknown dataset {dataset!r}; known: {DATASETS}")
  config = importlib.import_module(f"configs.{dataset}").get_config(
      f"method={_METHOD.value},bits={bits}")
  overrides = parse_overrides(_SET.value)
  if _DATA_PATH.value:
    overrides["data.path"] = _DATA_PATH.value
  try:
    return config_check.apply_overrides(config, overrides)
  except config_check.ConfigError as e:
    raise app.UsageError(f"--set: {e}") from e


def run_cell(config, folder: str) -> list[dict]:
  done = os.path.join(folder, "results.csv")
  # A finished cell is not loaded again; any other is checked (config and
  # data) before its folder is written to.
  dataset = None if os.path.exists(done) else experiment.checked_dataset(config)
  if sharding.is_primary():
    workdir.prepare(folder, config.to_dict())  # a changed config fails here
  sharding.barrier("cell prepared")
  if os.path.exists(done):
    logging.info("%s: finished earlier, skipping", folder)
    return results.read_csv(done)
  start = time.perf_counter()
  sweep = experiment.run_sweep(config, dataset, workdir=folder)
  logging.info("%s: %d runs in %.0fs", folder, len(sweep.rows),
               time.perf_counter() - start)
  if sharding.is_primary():
    experiment.write_outputs(folder, sweep)
  return sweep.rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # orbax logs every save at INFO; keep the log to the sweep's own progress.
  logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
  if _DATA_PATH.value and len(_DATASETS.value) > 1:
    raise app.UsageError("--data_path applies to one dataset at a time")
  cpu_devices.apply()  # before any computation
  rows = []
  for dataset in _DATASETS.value:
    for bits in _BITS.value:
      config = cell_config(dataset, int(bits))
      folder = os.path.join(_WORKDIR.value, f"{dataset}_{bits}")
      try:
        rows += run_cell(config, folder)
      except experiment.USER_ERRORS as e:
        sys.exit(f"error: {folder}: {type(e).__name__}: {e}")
  if sharding.is_primary():
    results.write_csv(os.path.join(_WORKDIR.value, "results.csv"), rows)
    reports.write_reports(rows, _WORKDIR.value)
    print(reports.markdown(rows))


def cli():
  """Console entry point (see pyproject.toml)."""
  app.run(main)


if __name__ == "__main__":
  cli()
