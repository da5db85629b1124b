"""Sweeps of methods fitted on the host rather than trained by gradient (the
classical baselines): the same grid of seeds, levels and weights, the same
label masks and the same outputs as a trained method's, one run at a time."""

from __future__ import annotations

import jax
import numpy as np

from hashvae import methods
from hashvae.training.grid import Grid, GridOutput
from hashvae.training.specs import TrainerSpec
from hashvae.training.train import run_key, run_mask


def fit_grid(spec: TrainerSpec, dataset, grid: Grid, options: methods.Options,
             base_seed: int) -> GridOutput:
  """Fits every run of `grid`; codes [runs, items, bits] as trained grids give.

  Run i sees the label mask a trained method's run of the same seed and
  level draws, and a numpy Generator seeded from its key, so it is exactly
  reproducible from the seed.
  """
  method = methods.get(grid.method)
  mask = jax.jit(run_mask(spec, dataset))
  db_codes, query_codes = [], []
  for i, row in enumerate(grid.rows()):
    key = run_key(base_seed, row["seed"])
    labelled = np.asarray(mask(key, np.float32(row["level"])))
    rng = np.random.default_rng(np.asarray(jax.random.key_data(
        jax.random.fold_in(key, 2))).tolist())
    hp = {k: float(v[i]) for k, v in grid.hparams.items()}
    db, query = method.fit(dataset, labelled, rng, hp, options, spec.bits)
    db_codes.append(np.asarray(db, np.uint8))
    query_codes.append(np.asarray(query, np.uint8))
  return GridOutput(db_codes=np.stack(db_codes), query_codes=np.stack(query_codes),
                    epoch_metrics={}, diverged_at=np.full(len(grid), -1), variables={})
