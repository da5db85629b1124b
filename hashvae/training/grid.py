"""A sweep as one flat run axis: (seeds x levels) -> `jit(vmap(run))`.

Each row of the grid is one run with its own key, level and traced weights.
`train` drives the epochs from a short host loop around one compiled epoch
step, over consecutive chunks of runs when the stacked state would not fit
a device; that loop is where progress is logged, metrics are written and
checkpoints are saved. Sharding, checkpoints and the metrics log are
leaves it calls.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hashvae import methods
from hashvae.core import sharding
from hashvae.store import checkpoint
from hashvae.store.checkpoint import Checkpoints, history_from_json, history_to_json
from hashvae.store.metrics_log import MetricsLog
from hashvae.training import chunking
from hashvae.training.specs import CheckpointSpec, Placement
from hashvae.training.train import RUNS_AXIS, Run, TrainState, run_key

log = logging.getLogger("hashvae")


@dataclasses.dataclass(frozen=True)
class Grid:
  """[runs] per-run settings, in row order."""

  method: str
  seeds: np.ndarray  # [runs] int
  levels: np.ndarray  # [runs] float64, exactly as the sweep names them
  hparams: dict  # name -> [runs] float64: the method's weights, then the trainer's

  def __len__(self):
    return len(self.seeds)

  def keys(self, base_seed: int):
    """[runs] keys of the runs (see `run_key`)."""
    return jax.vmap(lambda s: run_key(base_seed, s))(jnp.asarray(self.seeds, jnp.uint32))

  def take(self, rows: slice) -> "Grid":
    """The runs `rows` of this grid, as a grid."""
    return Grid(self.method, self.seeds[rows], self.levels[rows],
                {k: v[rows] for k, v in self.hparams.items()})

  def rows(self):
    """One dict per run: method, seed, level and the method's weights."""
    weights = [k for k in self.hparams if k not in methods.registry.TRAINER_WEIGHTS]
    return [dict(method=self.method, seed=int(self.seeds[i]), level=float(self.levels[i]),
                 **{k: float(self.hparams[k][i]) for k in weights})
            for i in range(len(self))]



class GridState(NamedTuple):
  """The stacked state of every run of a grid: what a checkpoint holds."""

  train: TrainState  # leaves [runs, ...]
  diverged_at: jax.Array  # [runs] int32: first epoch with a non-finite loss, or -1


@dataclasses.dataclass(frozen=True)
class GridOutput:
  db_codes: np.ndarray  # [runs, items, bits] uint8
  query_codes: np.ndarray  # [runs, queries, bits] uint8
  epoch_metrics: dict  # term -> [epochs, runs]
  diverged_at: np.ndarray  # [runs] int: 0-based epoch the loss became non-finite, -1 if never
  variables: dict  # the trained {"params", "batch_stats"}, leaves [runs, ...]
  # [runs, queries, bits] float32 scores the query codes threshold at 0;
  # None for a host-fitted method.
  query_scores: Optional[np.ndarray] = None


def concat_outputs(parts: list[GridOutput]) -> GridOutput:
  """Outputs of consecutive chunks of one grid -> the grid's output."""
  cat = lambda *xs, axis=0: np.concatenate(xs, axis=axis)
  return GridOutput(
      db_codes=cat(*[p.db_codes for p in parts]),
      query_codes=cat(*[p.query_codes for p in parts]),
      epoch_metrics={k: cat(*[p.epoch_metrics[k] for p in parts], axis=1)
                     for k in parts[0].epoch_metrics},
      diverged_at=cat(*[p.diverged_at for p in parts]),
      variables=jax.tree.map(cat, *[p.variables for p in parts]),
      query_scores=None if parts[0].query_scores is None
      else cat(*[p.query_scores for p in parts]))


@dataclasses.dataclass(frozen=True)
class GridProgram:
  """A run's jitted grid pieces on a mesh, and its data placed there. Build it
  once for all chunks of a grid: they share one compiled program (each
  padded to `runs` runs) and one copy of the data on the devices."""

  init: Callable  # (arrays, seeds, levels, hparams) -> GridState, all [runs]
  epoch_step: Callable  # (arrays, GridState, epoch) -> (GridState, {term: [runs]})
  encode: Callable  # (arrays, TrainState) -> {"db_codes", "query_codes", "query_scores"} [runs, ...]
  mesh: jax.sharding.Mesh
  runs: int  # the fewest runs a program is padded to (0: only to the mesh)
  arrays: dict  # run.arrays, replicated over the mesh


def grid_program(run: Run, base_seed: int, mesh: Optional[jax.sharding.Mesh] = None,
                 runs: int = 0) -> GridProgram:
  """`run`'s grid pieces jitted on `mesh` (default: every device), the run
  axis split over it. A run whose loss turns NaN/inf is marked inside the
  epoch step; the other runs are untouched (vmap keeps them independent)."""
  mesh = sharding.run_mesh() if mesh is None else mesh
  by_run = sharding.split_runs(mesh)

  def init(arrays, seeds, levels, hparams):
    keys = jax.vmap(lambda s: run_key(base_seed, s))(seeds)
    train = jax.vmap(run.init, in_axes=(None, 0, 0, 0))(arrays, keys, levels, hparams)
    return GridState(train, jnp.full(seeds.shape, -1, jnp.int32))

  def epoch_step(arrays, carry: GridState, epoch):
    train, terms = jax.vmap(run.train_epoch, in_axes=(None, 0),
                            axis_name=RUNS_AXIS)(arrays, carry.train)
    newly = (carry.diverged_at < 0) & ~jnp.isfinite(terms["loss"])
    return GridState(train, jnp.where(newly, epoch, carry.diverged_at)), terms

  return GridProgram(
      init=jax.jit(init, out_shardings=by_run),
      epoch_step=jax.jit(epoch_step, donate_argnums=1, out_shardings=(by_run, by_run)),
      encode=jax.jit(jax.vmap(run.encode, in_axes=(None, 0)), out_shardings=by_run),
      mesh=mesh, runs=runs,
      arrays=jax.tree.map(lambda a: sharding.place(a, sharding.replicated(mesh)),
                          run.arrays))


def initial_state(program: GridProgram, grid: Grid) -> GridState:
  """Every run of `grid` initialised, padded and split over the program's mesh."""
  total = sharding.padded_size(max(len(grid), program.runs), program.mesh)
  by_run = sharding.split_runs(program.mesh)
  per_run = lambda x, dtype: sharding.place(
      sharding.pad_runs(np.asarray(x, dtype), total), by_run)
  return program.init(program.arrays, per_run(grid.seeds, np.uint32),
                      per_run(grid.levels, np.float32),
                      {k: per_run(v, np.float32) for k, v in grid.hparams.items()})


EpochCallback = Callable[[int, int, dict, float], None]


def train_grid(run: Run, grid: Grid, base_seed: int,
               on_epoch: Optional[EpochCallback] = None,
               checkpoints: Optional[Checkpoints] = None,
               program: Optional[GridProgram] = None) -> GridOutput:
  """Trains every run of `grid` as one vmapped program.

  `on_epoch(epoch, epochs, metrics, elapsed)` is called after each epoch
  with the per-run metrics ({term: [runs]} numpy arrays). With
  `checkpoints`, the stacked state is saved when due and training resumes
  from the latest readable checkpoint found there. `program` (grid_program)
  reuses a program compiled for earlier chunks; default: one on every device.
  """
  program = grid_program(run, base_seed) if program is None else program
  carry, runs = initial_state(program, grid), len(grid)
  history, first = [], 0
  restored = checkpoints.restore_latest(carry) if checkpoints is not None else None
  if restored is not None:  # the newest readable checkpoint
    first, carry, saved = restored
    history = [history_from_json(h) for h in saved]
  start = time.perf_counter()
  for epoch in range(first, run.epochs):
    carry, metrics = program.epoch_step(program.arrays, carry, jnp.int32(epoch))
    metrics = {k: v[:runs] for k, v in sharding.to_host(metrics).items()}
    history.append(metrics)
    if on_epoch is not None:
      on_epoch(epoch, run.epochs, metrics, time.perf_counter() - start)
    if checkpoints is not None and checkpoints.due(epoch + 1, run.epochs):
      checkpoints.save(epoch + 1, carry, [history_to_json(h) for h in history])
  codes = sharding.to_host(program.encode(program.arrays, carry.train))
  variables = sharding.to_host(dict(params=carry.train.params,
                                    batch_stats=carry.train.batch_stats))
  return GridOutput(db_codes=codes["db_codes"][:runs],
                    query_codes=codes["query_codes"][:runs],
                    epoch_metrics={k: np.stack([h[k] for h in history]) for k in history[0]},
                    diverged_at=np.asarray(sharding.to_host(carry.diverged_at))[:runs],
                    variables=jax.tree.map(lambda x: np.asarray(x)[:runs], variables),
                    query_scores=codes["query_scores"][:runs])


def eta(elapsed: float, done: int, total: int) -> float:
  """Seconds left when `done` of `total` steps took `elapsed` (0 when finished)."""
  if done >= total:
    return 0.0
  return math.nan if done == 0 else elapsed / done * (total - done)


def log_epoch(name: str, runs: int):
  """A progress reporter; the ETA leaves out the first epoch (compilation)."""
  first = {}

  def report(epoch, epochs, terms, elapsed):
    loss = terms["loss"]
    finite = np.isfinite(loss)
    mean = float(loss[finite].mean()) if finite.any() else float("nan")
    first.setdefault("epoch", epoch)
    first.setdefault("elapsed", elapsed)
    left = eta(elapsed - first["elapsed"], epoch - first["epoch"],
               epochs - first["epoch"] - 1)
    log.info("%s: epoch %d/%d, %d runs, elapsed %.1fs, ETA %s, mean loss %.4f%s",
             name, epoch + 1, epochs, runs, elapsed,
             "?" if np.isnan(left) else f"{left:.0f}s", mean,
             "" if finite.all() else f" ({(~finite).sum()} runs non-finite)")
  return report


def train(run: Run, grid: Grid, base_seed: int, placement: Optional[Placement] = None,
          checkpoints: Optional[CheckpointSpec] = None,
          workdir: Optional[str] = None) -> GridOutput:
  """Trains `grid` as one compiled program, run over consecutive chunks of
  runs when the stacked state would not fit the placement's
  state budget per device (from the device where it is 0: training.chunking)
  or, on CPU devices, its cpu_runs_per_chunk runs a device. Defaults:
  Placement() and CheckpointSpec().
  With a workdir, each chunk checkpoints under
  checkpoints/<method>/<layout>/chunk_<n>/ and resumes from there, and
  process 0 logs the epochs' metrics (metrics.jsonl, TensorBoard)."""
  placement = placement or Placement()
  checkpoints = checkpoints or CheckpointSpec()
  method, mesh = grid.method, sharding.run_mesh(placement.devices)
  plan = chunking.plan(placement, run, len(grid), mesh, base_seed)
  size = plan.runs_per_chunk
  starts = range(0, len(grid), size)
  log.info("%s: %d runs in %d chunk(s) of up to %d, over %d %s device(s); %s",
           method, len(grid), len(starts), size, mesh.devices.size,
           mesh.devices.flat[0].platform, plan.why)
  program = grid_program(run, base_seed, mesh, runs=size)
  layout = workdir and checkpoint.layout_folder(workdir, method, len(starts),
                                         sharding.padded_size(size, mesh))
  metrics_log = (MetricsLog(workdir, method, chunked=len(starts) > 1)
                 if workdir and sharding.is_primary() else None)
  parts = []
  for number, first in enumerate(starts):
    part = grid.take(slice(first, first + size))
    progress = log_epoch(method if len(starts) == 1
                         else f"{method} chunk {number + 1}/{len(starts)}", len(part))

    def on_epoch(epoch, epochs, terms, elapsed, first=first, progress=progress):
      progress(epoch, epochs, terms, elapsed)
      if metrics_log is not None:
        metrics_log.epoch(epoch, terms, first_run=first)

    saver = layout and Checkpoints(os.path.join(layout, f"chunk_{number}"),
                                   every=checkpoints.every, keep=checkpoints.keep)
    try:
      parts.append(train_grid(run, part, base_seed, on_epoch, saver or None, program))
    finally:
      if saver:
        saver.close()
  out = concat_outputs(parts)
  if metrics_log is not None:
    metrics_log.finish(out.epoch_metrics)
  return out
