"""The experiment config turned into the typed records the layers below take.

This layer (this module, config_check, experiment) reads the ConfigDict; below the
sweep layer every function says in its signature what it depends on
(training.specs, data specs, methods.Options, a Grid). The functions named
after a lower-layer function (`make_run`, `train`, `fit_grid`) are that
function with its records built from a config, for the callers that hold
one (the experiment, the tuning, benchmarks, tests).
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import numpy as np
import scipy.sparse

from hashvae import data as data_lib
from hashvae import methods
from hashvae.data import neighbours as neighbours_lib
from hashvae.sweep import config_check
from hashvae.training import chunking, fitted, grid
from hashvae.training import train as train_lib
from hashvae.training.grid import Grid, GridOutput
from hashvae.training.specs import CheckpointSpec, Placement, TrainerSpec

log = logging.getLogger("hashvae")


def trainer_spec(config) -> TrainerSpec:
  return TrainerSpec(
      bits=config.bits, epochs=config.epochs, batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, hidden=tuple(config.model.hidden),
      batch_norm=config.model.batch_norm, sparse_input=config.model.sparse_input,
      optimizer=config.optimizer, mask_per_split=config.mask_per_split,
      shared_mask_seed=config.get("shared_mask_seed"), precision=config.precision)


def placement(config) -> Placement:
  return Placement(devices=config.devices,
                   state_memory_budget_mb=config.state_memory_budget_mb,
                   cpu_runs_per_chunk=config.cpu_runs_per_chunk)


def checkpoint_spec(config) -> CheckpointSpec:
  return CheckpointSpec(every=config.checkpoint_every, keep=config.checkpoints_to_keep)


def data_spec(config):
  """config.data as its loader's typed spec."""
  return data_lib.spec_from_fields(config.data.to_dict())


def options(config, method: str, multilabel_data: bool) -> methods.Options:
  return config_check.method_options(config, methods.get(method), multilabel_data)


def only_method(config, method: Optional[str]) -> str:
  """`method`, or the config's only method."""
  if method is not None:
    return method
  if len(config.methods) != 1:
    raise ValueError(f"config names {len(config.methods)} methods "
                     f"{tuple(config.methods)}; pass the one to build")
  return config.methods[0]


def build_grid(config, method: str) -> Grid:
  """Seeds x levels (level-major), each level with the method's weights for
  it (config.weights.<method>, else the method's defaults) and the
  trainer's learning_rate and temperature."""
  levels = tuple(config.levels)
  table = config_check.weight_table(config, methods.get(method))
  table.update(learning_rate=(config.learning_rate,) * len(levels),
               temperature=(config.temperature,) * len(levels))
  cells = [(seed, i) for i in range(len(levels)) for seed in config.seeds]
  column = lambda values: np.array(values, np.float64)
  return Grid(method=method, seeds=np.array([s for s, _ in cells], np.int64),
              levels=column([levels[i] for _, i in cells]),
              hparams={k: column([v[i] for _, i in cells]) for k, v in table.items()})


def neighbour_features(dataset, need: methods.Neighbours):
  """(features [items, dims] of the training items, similarity) the table of
  a method with `need` is computed from: dense features by 'cosine'; text
  by need.similarity on its term counts (data.neighbours.term_counts: BM25
  as the textbook defines it); bag-of-words without texts to count (the
  .mat and svmlight corpora, the synthetic one) by 'tfidf' on the inputs,
  whose values (log(1 + tf), tf-idf) then stand in for term frequencies,
  or by 'cosine' when need.similarity is 'cosine'."""
  db = dataset.database
  if not db.sparse:
    return db.inputs, "cosine"
  if need.similarity != "cosine" and dataset.vectoriser is not None and db.texts:
    counts = neighbours_lib.term_counts(dataset)
    if counts.shape[0] != len(db):
      raise data_lib.DataError(f"{dataset.name}: {counts.shape[0]} rows of term counts "
                               f"for {len(db)} training items")
    return counts, need.similarity
  return db.inputs, "cosine" if need.similarity == "cosine" else "tfidf"


def neighbour_indices(dataset, need: methods.Neighbours,
                      cache_dir: Optional[str] = None) -> np.ndarray:
  """[items, k] int32: each training item's need.k most similar other
  training items (data.neighbours.neighbour_table, cached under
  `cache_dir`), as positions in the training arrays: train then
  validation, the order of training.train.device_arrays; the test queries
  are never among them. Features as `neighbour_features` picks them.

  An item whose features are all zero (an empty document) is similar to no
  item: the table is computed over the other items, and its row lists the
  item itself k times, so that its neighbour terms repeat its own (empty)
  ones.
  """
  features, similarity = neighbour_features(dataset, need)
  empty = (np.diff(features.indptr) == 0 if scipy.sparse.issparse(features)
           else ~np.asarray(features).any(axis=1))
  kept = np.flatnonzero(~empty)
  log.info("%s: %d nearest neighbours of %d training items by %s%s", dataset.name,
           need.k, len(empty), similarity,
           f" ({empty.sum()} empty items are their own)" if empty.any() else "")
  table = neighbours_lib.neighbour_table(features[kept], k=need.k, similarity=similarity,
                                         cache_dir=cache_dir)
  indices = np.repeat(np.arange(len(empty), dtype=np.int32)[:, None], need.k, axis=1)
  indices[kept] = kept[table.indices]
  return indices


def make_run(config, dataset, method: Optional[str] = None,
             workdir: Optional[str] = None) -> train_lib.Run:
  """training.train.make_run of `method` (default: the config's only one);
  for a method that learns from neighbours, with their table
  (`neighbour_indices`, cached under <workdir>/cache when there is a workdir)."""
  method = only_method(config, method)
  need = methods.get(method).neighbours
  table = None
  if need is not None:
    table = neighbour_indices(dataset, need,
                              os.path.join(workdir, "cache") if workdir else None)
  return train_lib.make_run(trainer_spec(config), dataset, method,
                            options(config, method, dataset.multilabel), table)


def train(config, run: train_lib.Run, runs: Grid,
          workdir: Optional[str] = None) -> GridOutput:
  """training.grid.train with the config's placement and checkpoints."""
  return grid.train(run, runs, config.base_seed, placement(config),
                    checkpoint_spec(config), workdir)


def fit_grid(config, dataset, runs: Grid) -> GridOutput:
  """training.fitted.fit_grid with the config's trainer spec and options."""
  return fitted.fit_grid(trainer_spec(config), dataset, runs,
                         options(config, runs.method, dataset.multilabel),
                         config.base_seed)


def chunk_size(config, run: train_lib.Run, runs: int, mesh) -> int:
  """training.chunking.chunk_size with the config's placement."""
  return chunking.chunk_size(placement(config), run, runs, mesh, config.base_seed)
