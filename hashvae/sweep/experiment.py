"""config -> dataset -> grid -> compiled runs -> codes -> metrics -> rows.

With a workdir, each method's program checkpoints its stacked state under
`checkpoints/<method>/<layout>/chunk_<n>/` (layout: how many chunks of how
many runs, with device padding) and, once trained and evaluated, stores its
rows and codes in `methods/<method>.npz`; a re-run skips finished methods
and resumes the others from their latest checkpoint of the same layout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Optional

import numpy as np
from flax import traverse_util

from hashvae import data as data_lib
from hashvae import methods
from hashvae.core import sharding
from hashvae.retrieval import metrics
from hashvae.store import reports, results
from hashvae.store.workdir import WorkdirError
from hashvae.sweep import config_check, describe, specs

log = logging.getLogger("hashvae")

# Mistakes in the config, the data or the workdir: entry points report them
# in one line, without a traceback.
USER_ERRORS = (config_check.ConfigError, data_lib.DataError, WorkdirError,
               methods.MethodError)


@dataclasses.dataclass(frozen=True)
class MethodResult:
  rows: list  # one dict per run, in grid order
  db_codes: np.ndarray  # [runs, items, bits] uint8
  query_codes: np.ndarray  # [runs, queries, bits] uint8
  epoch_metrics: dict  # term -> [epochs, runs]
  variables: Optional[dict] = None  # trained {"params", "batch_stats"} [runs, ...]


@dataclasses.dataclass(frozen=True)
class SweepResult:
  rows: list  # one dict per run: dataset, method, ..., status, metrics
  db_codes: np.ndarray  # [runs, items, bits] uint8, runs in row order
  query_codes: np.ndarray  # [runs, queries, bits] uint8
  db_labels: np.ndarray  # [items] or [items, classes]
  query_labels: np.ndarray
  epoch_metrics: dict  # method -> {term: [epochs, runs]}


def train_method(config, dataset, method: str,
                 workdir: Optional[str] = None) -> MethodResult:
  """Trains one method's grid (grid.train: one compiled program, in chunks
  when needed; a fitted method's runs one by one on the host) and evaluates
  every run on the test queries."""
  grid = specs.build_grid(config, method)
  if methods.get(method).fit is not None:
    out = specs.fit_grid(config, dataset, grid)
  else:
    out = specs.train(config, specs.make_run(config, dataset, method, workdir), grid,
                      workdir)
  rows, platform = [], sharding.run_mesh(config.devices).devices.flat[0].platform
  ks = config_check.usable_ks(config, dataset.database_size)  # those it can score
  for i, row in enumerate(grid.rows()):
    diverged = int(out.diverged_at[i])
    if diverged >= 0:
      log.warning("%s seed %d level %g: loss became non-finite at epoch %d; "
                  "the run is excluded from the means", method, row["seed"],
                  row["level"], diverged + 1)
    rankings = tuple(config.extra_rankings) if out.query_scores is not None else ()
    scores = metrics.evaluate(
        out.query_codes[i], out.db_codes[i], dataset.test.labels, dataset.database_labels,
        ks, rankings=rankings,
        query_scores=None if out.query_scores is None else out.query_scores[i])
    scores.update({f"p@{k}_{r}": float("nan") for r in config.extra_rankings
                   for k in ks if r not in rankings})
    first = dict(dataset=config.data.name, method=method, bits=config.bits)
    rows.append(dict(first, **row,
                     status="ok" if diverged < 0 else "diverged",
                     diverged_epoch="" if diverged < 0 else diverged + 1,
                     platform=platform, precision=config.precision, **scores))
  return MethodResult(rows, out.db_codes, out.query_codes, out.epoch_metrics,
                      out.variables)


def variables_folder(workdir: str, method: str) -> str:
  return os.path.join(workdir, "methods", f"{method}.variables")


def save_method(workdir: str, method: str, result: MethodResult):
  """The method's trained variables ([runs, ...] .npy files, memory-mappable),
  then its rows, codes and curves: the npz marks the method finished. Its
  training checkpoints are no longer needed and are removed."""
  results.write_array_folder(variables_folder(workdir, method),
                             traverse_util.flatten_dict(result.variables, sep="/"))
  results.write_npz(os.path.join(workdir, "methods", f"{method}.npz"),
                    rows=np.array(json.dumps(result.rows)),
                    **results.packed_codes(db_codes=result.db_codes,
                                           query_codes=result.query_codes),
                    **{f"metric/{k}": v for k, v in result.epoch_metrics.items()})
  shutil.rmtree(os.path.join(workdir, "checkpoints", method), ignore_errors=True)


def load_variables(workdir: str, method: str, run: int) -> dict:
  """The trained {"params", "batch_stats"} of one run (row index within the
  method) from a finished sweep."""
  flat = results.read_array_folder(variables_folder(workdir, method))
  return traverse_util.unflatten_dict({tuple(k.split("/")): np.array(v[run])
                                       for k, v in flat.items()})


def load_method(path: str) -> MethodResult:
  with np.load(path, allow_pickle=False) as f:
    return MethodResult(
        rows=json.loads(str(f["rows"])), db_codes=results.unpacked_codes(f, "db_codes"),
        query_codes=results.unpacked_codes(f, "query_codes"),
        epoch_metrics={k.split("/", 1)[1]: f[k] for k in f.files
                       if k.startswith("metric/")})


def checked_dataset(config, dataset: Optional[data_lib.Dataset] = None
                    ) -> data_lib.Dataset:
  """Checks `config`, loads its data (unless given) and checks the config
  against the data. Entry points call it before they write to a workdir,
  so that a bad config or data path fails with nothing written or removed.

  Data it loads is described in one log line (describe.data_line), and the
  cut-offs of config.ks beyond the database, which train_method drops,
  in one warning; the config itself is left as it is.
  """
  config_check.import_extra_modules(config)
  config_check.check(config)
  loaded = dataset is None
  if loaded:
    start = time.perf_counter()
    dataset = data_lib.load(specs.data_spec(config))
    log.info("%s", describe.data_line(config, dataset, time.perf_counter() - start))
  config_check.check_against_data(config, dataset)
  dropped = describe.dropped_ks_line(config, dataset.database_size)
  if loaded and dropped:
    log.warning("%s", dropped)
  return dataset


def run_sweep(config, dataset: Optional[data_lib.Dataset] = None,
              workdir: Optional[str] = None) -> SweepResult:
  """Trains and evaluates every (method, seed, level) run of `config`."""
  dataset = checked_dataset(config, dataset)
  per_method = []
  for method in config.methods:
    done = workdir and os.path.join(workdir, "methods", f"{method}.npz")
    if done and os.path.exists(done):
      log.info("%s: already finished (%s), skipping", method, done)
      per_method.append(load_method(done))
      continue
    result = train_method(config, dataset, method, workdir)
    if done and sharding.is_primary():
      save_method(workdir, method, result)
      log.info("process 0 wrote %s", done)
    # The sweep's outputs need the codes only; the trained variables (1 GB
    # for 50 Snippets runs) are on disk by now.
    per_method.append(dataclasses.replace(result, variables=None))
  return SweepResult(
      rows=[row for r in per_method for row in r.rows],
      db_codes=np.concatenate([r.db_codes for r in per_method]),
      query_codes=np.concatenate([r.query_codes for r in per_method]),
      db_labels=dataset.database_labels, query_labels=dataset.test.labels,
      epoch_metrics={m: r.epoch_metrics for m, r in zip(config.methods, per_method,
                                                         strict=True)})


def runtime(config) -> dict:
  """What a sweep ran on and how (config.json's "runtime"): the devices'
  platform and kind, their count, the jax version and the matmul precision."""
  return dict(sharding.runtime(config.devices), precision=config.precision)


def write_outputs(folder: str, sweep: SweepResult) -> list[str]:
  """results.csv, codes.npz, the reports and the precision-recall curves over
  Hamming radius (pr_radius.png) of a finished sweep, each written
  atomically; returns the paths."""
  paths = [os.path.join(folder, "results.csv"), os.path.join(folder, "codes.npz")]
  results.write_csv(paths[0], sweep.rows)
  results.write_npz(paths[1], query_labels=sweep.query_labels, db_labels=sweep.db_labels,
                    **results.packed_codes(query_codes=sweep.query_codes,
                                           db_codes=sweep.db_codes))
  paths += reports.write_reports(sweep.rows, folder)
  if any(row["status"] == "ok" for row in sweep.rows):
    # Precision and recall of the Hamming ball at every radius, per run.
    curves = [metrics.radius_curve(sweep.query_codes[i], sweep.db_codes[i],
                                   sweep.query_labels, sweep.db_labels)
              for i in range(len(sweep.rows))]
    paths.append(os.path.join(folder, "pr_radius.png"))
    reports.pr_figure(sweep.rows, curves, paths[-1])
  return paths
