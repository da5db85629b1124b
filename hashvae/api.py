"""A few functions for notebooks: run a config, read a finished sweep, use its
codes and its trained encoders.

    from hashvae import api
    df = api.run("configs/digits.py:method=ssb_vae", "runs/d", seeds=(0, 1))
    sweep = api.Sweep("runs/d")
    query_codes, db_codes = sweep.codes(0)        # run = row of results.csv
    codes = sweep.encoder(0).encode(new_inputs)   # [items, dims] -> [items, bits]
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional, Union

import ml_collections
import numpy as np
import pandas as pd

from hashvae import data as data_lib
from hashvae import methods
from hashvae.core.models import ModelSpec
from hashvae.retrieval.encoder import Encoder
from hashvae.store import lock, results, workdir
from hashvae.sweep import config_check, experiment, specs


def load_config(spec: str, **overrides) -> ml_collections.ConfigDict:
  """'configs/x.py:arg' -> its config, with dotted-name overrides applied."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("hashvae_user_config", path)
  if module_spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  # A user's method must be registered before its config declares its fields.
  methods.import_modules(overrides.get("extra_modules", ""))
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return config_check.apply_overrides(module.get_config(arg or None), overrides)


def run(config: Union[str, ml_collections.ConfigDict], workdir_path: Optional[str] = None,
        **overrides) -> pd.DataFrame:
  """Runs a sweep as `launch.main` does; returns results.csv as a DataFrame.

  `config`: a ConfigDict or 'configs/x.py:arg'; `overrides`: dotted names
  (e.g. `**{"data.path": ...}` or `seeds=(0, 1)`). With `workdir_path`, the
  files are written and an interrupted sweep resumes.
  """
  if isinstance(config, str):
    config = load_config(config, **overrides)
  elif overrides:
    config = config_check.apply_overrides(config.copy_and_resolve_references(),
                                          overrides)
  if workdir_path is None:
    return pd.DataFrame(experiment.run_sweep(config).rows)
  lock.check_free(workdir_path)  # a sweep running there: refused before loading
  dataset = experiment.checked_dataset(config)  # before touching the workdir
  with lock.hold(workdir_path):
    workdir.prepare(workdir_path, config.to_dict(), runtime=experiment.runtime(config))
    sweep = experiment.run_sweep(config, dataset, workdir=workdir_path)
    experiment.write_outputs(workdir_path, sweep)
  return pd.DataFrame(sweep.rows)


def model_spec(config, dims: int, num_classes: int) -> ModelSpec:
  return ModelSpec(dims=dims, bits=config.bits, num_classes=num_classes,
                   hidden=tuple(config.model.hidden), batch_norm=config.model.batch_norm)


class Sweep:
  """A finished workdir: its config, results, codes and trained encoders."""

  def __init__(self, path: str):
    self.path = path
    workdir.check_finished(path)  # names a missing or damaged file
    self.config = ml_collections.ConfigDict(
        workdir.read_config(os.path.join(path, "config.json")))
    self.rows = workdir.read_results(os.path.join(path, "results.csv"))
    self._dataset = None

  @property
  def results(self) -> pd.DataFrame:
    return pd.DataFrame(self.rows)

  @property
  def dataset(self) -> data_lib.Dataset:
    """The sweep's dataset, loaded once (needed for texts and the vectoriser)."""
    if self._dataset is None:
      data = data_lib.load(specs.data_spec(self.config))
      # The codes were computed on the data as it was: a changed file would
      # pair them with other items.
      with np.load(os.path.join(self.path, "codes.npz"), allow_pickle=False) as f:
        same = (np.array_equal(f["db_labels"], data.database_labels)
                and np.array_equal(f["query_labels"], data.test.labels))
      if not same:
        raise data_lib.DataError(
            f"{self.config.data.get('path') or data.name}: the data no longer "
            f"matches the sweep in {self.path} (items or labels differ from "
            "those in its codes.npz): were the data files changed?")
      self._dataset = data
    return self._dataset

  def row(self, run: int) -> dict:
    if not 0 <= run < len(self.rows):
      raise IndexError(f"run {run} is not a row of results.csv (0..{len(self.rows) - 1})")
    return self.rows[run]

  def best_run(self, level: float, metric: str = "p@100",
               method: Optional[str] = None) -> int:
    """The row with the best `metric` among finished runs at `level` (of
    `method`, when given)."""
    candidates = [i for i, r in enumerate(self.rows)
                  if abs(float(r["level"]) - level) < 1e-9 and r.get("status", "ok") == "ok"
                  and method in (None, r["method"])]
    if not candidates:
      raise ValueError(f"no finished run at level {level}"
                       + (f" of method {method!r}" if method else ""))
    if metric not in self.rows[candidates[0]]:
      raise ValueError(f"results.csv has no {metric!r} column")
    return max(candidates, key=lambda i: float(self.rows[i][metric]))

  def codes(self, run: int) -> tuple[np.ndarray, np.ndarray]:
    """(query_codes [queries, bits], db_codes [items, bits]) of one run."""
    self.row(run)
    with np.load(os.path.join(self.path, "codes.npz"), allow_pickle=False) as f:
      return (results.unpacked_codes(f, "query_codes", run),
              results.unpacked_codes(f, "db_codes", run))

  def encoder(self, run: int) -> Encoder:
    row = self.row(run)
    method = row["method"]
    config_check.import_extra_modules(self.config)  # a user's method registers itself
    if methods.get(method).fit is not None:
      raise ValueError(f"run {run} is of {method!r}, a fitted method with no trained "
                       "network to encode new items")
    within = sum(1 for r in self.rows[:run] if r["method"] == method)
    data = self.dataset
    variables = experiment.load_variables(self.path, method, within)
    return Encoder(method, model_spec(self.config, data.dims, data.num_classes),
                   variables, data.vectoriser)
