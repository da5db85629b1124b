"""A sweep as one flat run axis: (seeds x levels) -> `jit(vmap(run))`.

Each row of the grid is one run with its own key, level and traced loss
weights. The epochs are driven from a short host loop around one compiled
epoch step, which is where progress is reported.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hashvae import config_check, sharding
from hashvae.checkpoint import Checkpoints, history_from_json, history_to_json
from hashvae.train import HPARAM_NAMES, RUNS_AXIS, Run, TrainState


def run_key(base_seed: int, seed):
  """fold_in(key(base_seed), seed): seed s is the same run in every sweep."""
  return jax.random.fold_in(jax.random.key(base_seed), seed)


@dataclasses.dataclass(frozen=True)
class Grid:
  """[runs] per-run settings, in row order."""

  method: str
  seeds: np.ndarray  # [runs] int
  levels: np.ndarray  # [runs] float64, as written in the config
  hparams: dict  # name -> [runs] float64

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
    """One dict per run: method, seed, level, alpha, beta, gamma."""
    return [dict(method=self.method, seed=int(self.seeds[i]),
                 level=float(self.levels[i]),
                 **{k: float(self.hparams[k][i]) for k in ("alpha", "beta", "gamma")})
            for i in range(len(self))]


def build_grid(config, method: str) -> Grid:
  """Seeds x levels (level-major), each level with its own loss weights
  (config.weights[method], or config.weights.default)."""
  block, where = config_check.weights_block(config, method)
  levels = tuple(config.levels)
  table = {k: config_check.level_values(block, k, levels, where)
           for k in ("alpha", "beta", "gamma")}
  cells = [(seed, i) for i in range(len(levels)) for seed in config.seeds]
  column = lambda values: np.array(values, np.float64)
  hparams = {k: column([table[k][i] for _, i in cells]) for k in table}
  hparams["learning_rate"] = column([config.learning_rate] * len(cells))
  hparams["temperature"] = column([config.temperature] * len(cells))
  return Grid(method=method,
              seeds=np.array([s for s, _ in cells], np.int64),
              levels=column([levels[i] for _, i in cells]), hparams=hparams)


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


EpochCallback = Callable[[int, int, dict, float], None]


def concat_outputs(parts: list[GridOutput]) -> GridOutput:
  """Outputs of consecutive chunks of one grid -> the grid's output."""
  cat = lambda *xs, axis=0: np.concatenate(xs, axis=axis)
  return GridOutput(
      db_codes=cat(*[p.db_codes for p in parts]),
      query_codes=cat(*[p.query_codes for p in parts]),
      epoch_metrics={k: cat(*[p.epoch_metrics[k] for p in parts], axis=1)
                     for k in parts[0].epoch_metrics},
      diverged_at=cat(*[p.diverged_at for p in parts]),
      variables=jax.tree.map(cat, *[p.variables for p in parts]))


def state_bytes_per_run(run: Run, base_seed: int) -> int:
  """Bytes of one run's train state (parameters, Adam moments, batch-norm
  statistics, mask, ...), from shapes alone."""
  hp = {k: jnp.float32(1.0) for k in HPARAM_NAMES}
  shapes = jax.eval_shape(run.init, run.arrays, run_key(base_seed, 0), jnp.float32(1.0), hp)
  return sum(x.size * getattr(x.dtype, "itemsize", 8) for x in jax.tree.leaves(shapes))


def runs_per_chunk(runs: int, bytes_per_run: int, budget_bytes: int, devices: int,
                   cap_per_device: int = 0) -> int:
  """How many runs one program stacks so that each device holds at most
  `budget_bytes` of train state and, with `cap_per_device` > 0, at most
  that many runs (a multiple of `devices`, at least one per device, unless
  it is all the runs: the program pads those to a multiple). The chunks are
  balanced (50 runs that fit 31 at a time run as 2 x 25, not 31 + 19), so
  that every chunk has one shape: one compile."""
  per_device = max(1, budget_bytes // max(bytes_per_run, 1))
  if cap_per_device > 0:
    per_device = min(per_device, cap_per_device)
  most = min(runs, per_device * devices)
  chunks = -(-runs // most)
  balanced = -(-runs // chunks)
  return min(most, -(-balanced // devices) * devices)


def chunk_size(config, run: Run, runs: int, mesh: jax.sharding.Mesh) -> int:
  """runs_per_chunk for a grid of `runs` runs of `run` on `mesh`, from the
  config: state_memory_budget_mb per device and, on CPU devices only,
  cpu_runs_per_chunk."""
  on_cpu = mesh.devices.flat[0].platform == "cpu"
  return runs_per_chunk(runs, state_bytes_per_run(run, config.base_seed),
                        int(config.state_memory_budget_mb * 2**20),
                        mesh.devices.size,
                        config.cpu_runs_per_chunk if on_cpu else 0)


def grid_epoch_fn(run: Run):
  """(arrays, GridState, epoch) -> (GridState, {term: [runs]}), vmapped over runs.

  A run whose loss turns NaN/inf is marked here, inside the program; the
  other runs are untouched (vmap keeps them independent).
  """
  def step(arrays, carry: GridState, epoch):
    train, terms = jax.vmap(run.train_epoch, in_axes=(None, 0),
                            axis_name=RUNS_AXIS)(arrays, carry.train)
    newly = (carry.diverged_at < 0) & ~jnp.isfinite(terms["loss"])
    return GridState(train, jnp.where(newly, epoch, carry.diverged_at)), terms
  return step


@dataclasses.dataclass(frozen=True)
class GridFunctions:
  """A grid's jitted pieces for one run, base seed and mesh, and the run's
  data placed on that mesh. Build them once and pass them to every chunk of
  a grid: the chunks then share one compiled program (a new jit per chunk
  would compile each again), a narrower last chunk being padded to `runs`,
  and the data is copied to the devices once, not once per chunk."""

  init: Callable  # (arrays, seeds, levels, hparams) -> GridState, all [runs]
  epoch_step: Callable  # (arrays, GridState, epoch) -> (GridState, {term: [runs]})
  encode: Callable  # (arrays, TrainState) -> {"db_codes", "query_codes"} [runs, ...]
  mesh: jax.sharding.Mesh
  runs: int  # the fewest runs a program is padded to (0: only to the mesh)
  arrays: dict  # run.arrays, replicated over the mesh


def grid_functions(run: Run, base_seed: int,
                   mesh: Optional[jax.sharding.Mesh] = None,
                   runs: int = 0) -> GridFunctions:
  """The jitted init, epoch step and encoder of `run`'s grids on `mesh`
  (default: every device), the run axis split over it, and `run`'s data
  placed there; programs are padded to at least `runs` runs (the chunk
  size), so that every chunk of a grid has one shape."""
  mesh = sharding.run_mesh() if mesh is None else mesh
  by_run = sharding.split_runs(mesh)

  def init(arrays, seeds, levels, hparams):
    keys = jax.vmap(lambda s: run_key(base_seed, s))(seeds)
    train = jax.vmap(run.init, in_axes=(None, 0, 0, 0))(arrays, keys, levels, hparams)
    return GridState(train, jnp.full(seeds.shape, -1, jnp.int32))

  return GridFunctions(
      init=jax.jit(init, out_shardings=by_run),
      epoch_step=jax.jit(grid_epoch_fn(run), donate_argnums=1,
                         out_shardings=(by_run, by_run)),
      encode=jax.jit(jax.vmap(run.encode, in_axes=(None, 0)), out_shardings=by_run),
      mesh=mesh, runs=runs,
      arrays=jax.tree.map(lambda a: sharding.place(a, sharding.replicated(mesh)),
                          run.arrays))


@dataclasses.dataclass(frozen=True)
class GridProgram:
  """A grid's jitted pieces on a mesh, and its placed data and first state."""

  epoch_step: Callable  # (arrays, GridState, epoch) -> (GridState, {term: [runs]})
  encode: Callable  # (arrays, TrainState) -> {"db_codes", "query_codes"} [runs, ...]
  arrays: dict  # the data, replicated over the mesh
  state: GridState  # initial, [padded runs, ...] split over the mesh
  runs: int  # real runs; the rest is padding


def grid_program(run: Run, grid: Grid, base_seed: int,
                 mesh: Optional[jax.sharding.Mesh] = None,
                 functions: Optional[GridFunctions] = None) -> GridProgram:
  """Places the per-run settings on `mesh` (default: every device, or that
  of `functions`) and initialises every run. `functions` (from
  grid_functions(run, base_seed, mesh)) reuses compiled programs and the
  data already placed."""
  if functions is None:
    functions = grid_functions(run, base_seed, mesh)
  mesh = functions.mesh
  total = sharding.padded_size(max(len(grid), functions.runs), mesh)
  by_run = sharding.split_runs(mesh)
  per_run = lambda x, dtype: sharding.place(
      sharding.pad_runs(np.asarray(x, dtype), total), by_run)
  arrays = functions.arrays
  state = functions.init(
      arrays, per_run(grid.seeds, np.uint32), per_run(grid.levels, np.float32),
      {k: per_run(v, np.float32) for k, v in grid.hparams.items()})
  return GridProgram(epoch_step=functions.epoch_step, encode=functions.encode,
                     arrays=arrays, state=state, runs=len(grid))


def train_grid(run: Run, grid: Grid, base_seed: int,
               on_epoch: Optional[EpochCallback] = None,
               checkpoints: Optional[Checkpoints] = None,
               mesh: Optional[jax.sharding.Mesh] = None,
               functions: Optional[GridFunctions] = None) -> GridOutput:
  """Trains every run of `grid` as one vmapped program, split over `mesh`.

  `on_epoch(epoch, epochs, metrics, elapsed)` is called after each epoch
  with the per-run metrics ({term: [runs]} numpy arrays). With
  `checkpoints`, the stacked state is saved when due and training resumes
  from the latest checkpoint found there. `mesh` defaults to every device;
  `functions` (grid_functions) reuses programs compiled for earlier chunks.
  """
  program = grid_program(run, grid, base_seed, mesh, functions)
  arrays, carry, runs = program.arrays, program.state, program.runs
  history, first = [], 0
  if checkpoints is not None and checkpoints.latest_epoch() is not None:
    first = checkpoints.latest_epoch()
    carry, saved = checkpoints.restore(first, carry)
    history = [history_from_json(h) for h in saved]
  start = time.perf_counter()
  for epoch in range(first, run.epochs):
    carry, metrics = program.epoch_step(arrays, carry, jnp.int32(epoch))
    metrics = {k: v[:runs] for k, v in sharding.to_host(metrics).items()}
    history.append(metrics)
    if on_epoch is not None:
      on_epoch(epoch, run.epochs, metrics, time.perf_counter() - start)
    if checkpoints is not None and checkpoints.due(epoch + 1, run.epochs):
      checkpoints.save(epoch + 1, carry, [history_to_json(h) for h in history])
  codes = sharding.to_host(program.encode(arrays, carry.train))
  stacked = {k: np.stack([h[k] for h in history]) for k in history[0]}
  variables = sharding.to_host(dict(params=carry.train.params,
                                    batch_stats=carry.train.batch_stats))
  return GridOutput(db_codes=codes["db_codes"][:runs],
                    query_codes=codes["query_codes"][:runs],
                    epoch_metrics=stacked,
                    diverged_at=np.asarray(sharding.to_host(carry.diverged_at))[:runs],
                    variables=jax.tree.map(lambda x: np.asarray(x)[:runs], variables))


def eta(elapsed: float, done: int, total: int) -> float:
  """Seconds left when `done` of `total` steps took `elapsed` (0 when finished)."""
  if done >= total:
    return 0.0
  return math.nan if done == 0 else elapsed / done * (total - done)
