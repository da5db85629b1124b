"""config -> dataset -> grid -> compiled runs -> codes -> metrics -> rows."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional

import numpy as np

from hashvae import config_check, metrics
from hashvae import data as data_lib
from hashvae import grid as grid_lib
from hashvae.train import make_run

log = logging.getLogger("hashvae")


@dataclasses.dataclass(frozen=True)
class SweepResult:
  rows: list  # one dict per run: dataset, method, bits, seed, level, weights, metrics
  db_codes: np.ndarray  # [runs, items, bits] uint8, runs in row order
  query_codes: np.ndarray  # [runs, queries, bits] uint8
  db_labels: np.ndarray  # [items] or [items, classes]
  query_labels: np.ndarray
  epoch_metrics: list  # per method: {term: [epochs, runs]}


def log_epoch(method: str, runs: int):
  def report(epoch, epochs, terms, elapsed):
    loss = terms["loss"]
    finite = np.isfinite(loss)
    mean = float(loss[finite].mean()) if finite.any() else float("nan")
    log.info("%s: epoch %d/%d, %d runs, elapsed %.1fs, ETA %.1fs, mean loss %.4f%s",
             method, epoch + 1, epochs, runs, elapsed,
             grid_lib.eta(elapsed, epoch + 1, epochs), mean,
             "" if finite.all() else f" ({(~finite).sum()} runs non-finite)")
  return report


def run_sweep(config, dataset: Optional[data_lib.Dataset] = None) -> SweepResult:
  """Trains and evaluates every (method, seed, level) run of `config`."""
  config_check.check(config)
  if dataset is None:
    start = time.perf_counter()
    dataset = data_lib.load(config.data)
    log.info("loaded %s: %d train, %d validation, %d test items, %d dims, "
             "%d classes in %.1fs", dataset.name, len(dataset.train),
             len(dataset.validation), len(dataset.test), dataset.dims,
             dataset.num_classes, time.perf_counter() - start)
  db = dataset.database
  rows, db_codes, query_codes, history = [], [], [], []
  for method in config.methods:
    grid = grid_lib.build_grid(config, method)
    run = make_run(config, dataset, method)
    out = grid_lib.train_grid(run, grid, config.base_seed,
                              log_epoch(method, len(grid)))
    diverged = grid_lib.first_nonfinite_epoch(out.epoch_metrics["loss"])
    for i, row in enumerate(grid.rows()):
      if diverged[i] >= 0:
        log.warning("%s seed %d level %.2f: loss became non-finite at epoch "
                    "%d", method, row["seed"], row["level"], diverged[i] + 1)
      scores = metrics.evaluate(out.query_codes[i], out.db_codes[i],
                                dataset.test.labels, db.labels, tuple(config.ks))
      rows.append(dict(dataset=config.data.name, method=method,
                       bits=config.bits, seed=row["seed"], level=row["level"],
                       alpha=row["alpha"], beta=row["beta"], gamma=row["gamma"],
                       **scores))
    db_codes.append(out.db_codes)
    query_codes.append(out.query_codes)
    history.append(out.epoch_metrics)
  return SweepResult(rows=rows, db_codes=np.concatenate(db_codes),
                     query_codes=np.concatenate(query_codes),
                     db_labels=db.labels, query_labels=dataset.test.labels,
                     epoch_metrics=history)

