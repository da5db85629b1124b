r"""Runs the study's sweeps: every method of each (dataset, bits) cell.

    python -m launch.reproduce --dataset=snippets --bits=16 --workdir=runs/repro
    python -m launch.reproduce --dataset=snippets,newsgroups,tmc --bits=16,32 \
        --workdir=runs/repro --set='seeds=(0,1,2),epochs=30'

Each cell runs configs/<dataset>.py:method=all,bits=<bits> (released per-level
weights, 10 levels x 5 seeds, each method one vmapped program) in
WORKDIR/<dataset>_<bits>/, resumable like launch.main; finished cells are
skipped on a re-run. The merged summary.md, summary.tex and p_at_100.png go
to WORKDIR. WORKDIR, and each cell's folder while it runs, is locked against
a second process (hashvae.store.lock).

With --tune, each cell is a launch.tune workdir instead: every method's
weights are chosen on validation with the same search (config.tune, set
with --set='tune.candidates=8,...'), then trained on the test queries in
the cell's final/. WORKDIR also gets launch.compare's compare.md and
figures over every cell: the comparison of tuned methods as one command.

    python -m launch.reproduce --tune --dataset=snippets,newsgroups \
        --method=ssb_vae+phs_gs+vdsh_s+pl_hash+im_hash+cv_hash --workdir=runs/own \
        --set='levels=(0.1,0.2,0.3,1.0),tune.candidates=8,tune.halving_rounds=1'
"""

import ast
import contextlib
import datetime
import importlib
import os
import time

import jax
from absl import app, flags, logging

from hashvae.core import sharding
from hashvae.store import lock, reports, results, workdir
from hashvae.sweep import config_check, experiment
from hashvae.tuning import tune
from hashvae.tuning import tune_space as space
from launch import cpu_devices, errors

DATASETS = ("digits", "snippets", "newsgroups", "tmc", "cifar", "synthetic")

_DATASETS = flags.DEFINE_list("dataset", ["snippets"], f"Any of {DATASETS}.")
_BITS = flags.DEFINE_list("bits", ["16"], "Code lengths.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for every cell's outputs.")
_DATA_PATH = flags.DEFINE_string("data_path", None, "Overrides config.data.path "
                                 "(one dataset only).")
_SET = flags.DEFINE_string("set", "", "Config overrides for every cell, "
                           "e.g. 'epochs=5,seeds=(0,1)' (Python literals).")
_METHOD = flags.DEFINE_string("method", "all", "Methods of each cell (a+b or all).")
_GRID = flags.DEFINE_string("grid", "", "Each cell's weights file (configs/<dataset>.py:"
                            "grid=PATH, e.g. a launch.tune weights.csv); default: the "
                            "config's own (the released weights for the study's data).")
_TUNE = flags.DEFINE_bool("tune", False, "Choose every method's weights on validation "
                          "in each cell (launch.tune), then compare the tuned methods.")
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


def bit_lengths(values: list[str]) -> list[int]:
  """--bits as integers >= 1."""
  try:
    bits = [int(b) for b in values]
  except ValueError:
    raise app.UsageError(f"--bits={','.join(values)}: expected code lengths, e.g. "
                         "--bits=16,32") from None
  if not bits or min(bits) < 1:
    raise app.UsageError(f"--bits={','.join(values)}: every code length must be >= 1")
  return bits


def cell_config(dataset: str, bits: int):
  if dataset not in DATASETS:
    raise app.UsageError(f"unknown dataset {dataset!r}; known: {DATASETS}")
  try:
    config = importlib.import_module(f"configs.{dataset}").get_config(
        f"method={_METHOD.value},bits={bits}" + (f",grid={_GRID.value}" if _GRID.value else ""))
  except ValueError as e:  # the config's own argument checks
    raise app.UsageError(f"--dataset={dataset} --bits={bits} --method={_METHOD.value}"
                         f"{' --grid=' + _GRID.value if _GRID.value else ''}: {e}") from e
  overrides = parse_overrides(_SET.value)
  if _DATA_PATH.value:
    overrides["data.path"] = _DATA_PATH.value
  try:
    config = config_check.apply_overrides(config, overrides)
    if _TUNE.value:
      space.check(config)
    return config
  except config_check.ConfigError as e:
    raise app.UsageError(f"--set: {e}") from e


def held(folder: str):
  """`folder`'s lock, taken by process 0 only (see launch.main.held)."""
  if not sharding.is_primary():
    return contextlib.nullcontext()
  return lock.hold(folder, processes=jax.process_count())


def finished_rows(done: str):
  """A finished cell's rows, or None when its results.csv cannot be read:
  then it is moved aside with a warning and the cell runs again (its
  finished methods are kept, so that is quick)."""
  try:
    return workdir.read_results(done)
  except workdir.WorkdirError as e:
    if sharding.is_primary():
      aside = f"{done}.corrupt-{datetime.datetime.now():%Y%m%d-%H%M%S}"
      os.rename(done, aside)
      logging.warning("%s; moved it to %s, and the cell runs again", e, aside)
    return None


def run_cell(config, folder: str) -> list[dict]:
  done = os.path.join(folder, "results.csv")
  rows = finished_rows(done) if os.path.exists(done) else None
  sharding.barrier("cell results read")
  # A finished cell is not loaded again; any other is checked (config and
  # data) before its folder is written to.
  dataset = None if rows is not None else experiment.checked_dataset(config)
  with held(folder):
    if sharding.is_primary():
      workdir.prepare(folder, config.to_dict(),  # a changed config fails here
                      runtime=experiment.runtime(config))
    sharding.barrier("cell prepared")
    if rows is not None:
      logging.info("%s: finished earlier, skipping", folder)
      return rows
    start = time.perf_counter()
    sweep = experiment.run_sweep(config, dataset, workdir=folder)
    logging.info("%s: %d runs in %.0fs", folder, len(sweep.rows),
                 time.perf_counter() - start)
    if sharding.is_primary():
      experiment.write_outputs(folder, sweep)
  return sweep.rows


def run_tuned_cell(config, folder: str) -> tuple[list[dict], str]:
  """A launch.tune of the cell's methods in `folder` (resumed when
  interrupted; a finished one only reloads its data and results): the
  rows of its final sweep, the chosen weights on the test queries, and the
  validation metric they were chosen by (tune.metric resolved for the data)."""
  dataset = experiment.checked_dataset(config)
  with lock.hold(folder):
    workdir.prepare(folder, config.to_dict(),  # a changed config fails here
                    runtime=experiment.runtime(config))
    found, sweep = tune.run_tune(config, dataset, folder)
  return sweep.rows, found.metric


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # orbax logs every save at INFO; keep the log to the sweep's own progress.
  logging.get_absl_handler().addFilter(lambda r: "/orbax/" not in r.pathname)
  if _DATA_PATH.value and len(_DATASETS.value) > 1:
    raise app.UsageError("--data_path applies to one dataset at a time")
  bits = bit_lengths(_BITS.value)
  # Every cell's config is built (and its overrides checked) before any runs.
  cells = [(dataset, b, cell_config(dataset, b)) for dataset in _DATASETS.value
           for b in bits]
  cpu_devices.apply()  # before any computation
  top = _WORKDIR.value
  if sharding.is_primary():
    lock.check_free(top)  # a second process stops before loading anything
  if _TUNE.value and jax.process_count() > 1:
    raise app.UsageError("--tune runs in one process (launch.tune does); shard it "
                         "over one host's devices")
  rows, chosen_by = [], []
  with held(top):
    for dataset, b, config in cells:
      cell = os.path.join(top, f"{dataset}_{b}")
      if _TUNE.value:
        cell_rows, metric = run_tuned_cell(config, cell)
        rows, chosen_by = rows + cell_rows, chosen_by + [metric]
      else:
        rows += run_cell(config, cell)
    if sharding.is_primary():
      results.write_csv(os.path.join(top, "results.csv"), rows)
      reports.write_reports(rows, top)
      # Compared on the metric the first cell's weights were chosen by.
      print(reports.write_comparison(rows, top, chosen_by[0])[0] if _TUNE.value
            else reports.markdown(rows))


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv, on_interrupt="rerun the same command to resume: finished "
             "cells are skipped and the others resume from their checkpoints")


if __name__ == "__main__":
  cli()
