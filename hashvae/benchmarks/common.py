"""What the benchmark sections share: compiled programs timed in turns, the
runs they train, and the data they train on.

Every comparison is measured side by side in one process, the contenders
taking turns (A, B, A, B, ...), and reported as medians: other work on the
machine slows both alike, and a slow phase only ever lengthens a round.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import snippets
from hashvae import data as data_lib
from hashvae.core.sparse import RUNS_AXIS
from hashvae.sweep import specs
from hashvae.training import grid as grid_lib

METHOD = "ssb_vae"


class Program:
  """A compiled epoch step and the state it carries, timed per call."""

  def __init__(self, epoch_fn, arrays, state):
    start = time.perf_counter()
    self.step = jax.jit(epoch_fn, donate_argnums=1).lower(arrays, state).compile()
    self.compile_s = time.perf_counter() - start
    self.arrays, self.state = arrays, state

  def __call__(self):
    self.state, _ = self.step(self.arrays, self.state)
    jax.block_until_ready(self.state)

  def memory(self) -> dict:
    m = self.step.memory_analysis()
    return dict(argument_bytes=int(m.argument_size_in_bytes),
                temp_bytes=int(m.temp_size_in_bytes),
                output_bytes=int(m.output_size_in_bytes),
                donated_alias_bytes=int(m.alias_size_in_bytes))


def take_turns(contenders: dict, rounds: int) -> dict:
  """{name: callable} -> {name: [seconds per round]}, calls interleaved."""
  times = {name: [] for name in contenders}
  for _ in range(rounds):
    for name, fn in contenders.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times


def median(seconds) -> float:
  return float(np.median(seconds))


def ms_per_step(times: dict, steps: int) -> dict:
  """{name: [seconds per round]} -> {name: median ms per step}."""
  return {name: 1e3 * median(seconds) / steps for name, seconds in times.items()}


# --- runs ---------------------------------------------------------------------


def first_runs(config, runs: int, method: str = METHOD) -> grid_lib.Grid:
  """The first `runs` rows of the config's grid of `method` (levels cycled,
  then seeds)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.seeds = tuple(range(-(-runs // len(config.levels))))
  return specs.build_grid(config, method).take(slice(0, runs))


def as_float32(grid: grid_lib.Grid, rows=slice(None)):
  """(levels, hparams) of `rows` as float32 device arrays."""
  f32 = lambda v: jnp.asarray(v[rows], jnp.float32)
  return f32(grid.levels), {k: f32(v) for k, v in grid.hparams.items()}


def init_stacked(run, grid: grid_lib.Grid, base_seed: int = 0):
  """Every run of `grid` initialised, stacked [runs, ...] on one device."""
  levels, hparams = as_float32(grid)
  return jax.jit(jax.vmap(run.init, in_axes=(None, 0, 0, 0)))(
      run.arrays, grid.keys(base_seed), levels, hparams)


def init_one(run, grid: grid_lib.Grid, i: int, base_seed: int = 0):
  """Run `i` of `grid` initialised."""
  level, hparams = as_float32(grid, i)
  return jax.jit(run.init)(run.arrays, grid.keys(base_seed)[i], level, hparams)


class Consecutive:
  """The runs of a grid as consecutive programs of `size` runs, `epochs`
  epochs each. Size 1 is one run at a time through `jit(train_epoch)` on
  one device; more is how grid.train runs a grid: chunks of `size` runs
  through one compiled grid.grid_program, the run axis split over `mesh`
  (default: every device), a narrower last chunk padded. Only the epoch
  calls are timed (init is not, as for a vmapped Program). `last` is the
  trained state of the last run (size 1) or of the last chunk's runs
  ([runs, ...], padding dropped); `round_seconds` holds each call's timed
  seconds."""

  def __init__(self, run, grid, epochs, size: int = 1, mesh=None):
    self.run, self.grid, self.epochs, self.size = run, grid, epochs, size
    if size == 1:
      self.program = Program(run.train_epoch, run.arrays, init_one(run, grid, 0))
    else:
      self.program = grid_lib.grid_program(run, 0, mesh, runs=size)
    self.train(0, epochs=1)  # warm-up: compiles
    self.round_seconds = []

  def train(self, first: int, epochs: int) -> float:
    """Trains the chunk starting at run `first`; returns the seconds its
    epoch calls took."""
    if self.size == 1:
      program = self.program
      program.state = jax.block_until_ready(init_one(self.run, self.grid, first))
      start = time.perf_counter()
      for _ in range(epochs):
        program()
      self.last = program.state
      return time.perf_counter() - start
    part = self.grid.take(slice(first, first + self.size))
    program = self.program
    carry = jax.block_until_ready(grid_lib.initial_state(program, part))
    start = time.perf_counter()
    for epoch in range(epochs):  # waits for each epoch, as train_grid does
      carry, terms = program.epoch_step(program.arrays, carry, jnp.int32(epoch))
      jax.block_until_ready(terms)
    self.last = jax.tree.map(lambda a: a[:len(part)], carry.train)
    return time.perf_counter() - start

  def __call__(self):
    self.round_seconds.append(sum(
        self.train(first, self.epochs)
        for first in range(0, len(self.grid), self.size)))


# --- data and configs ---------------------------------------------------------


def training_subset(dataset, items: int):
  """The first `items` database items as the training set (validation empty)."""
  db = dataset.database
  return dataclasses.replace(dataset, train=db.take(slice(0, items)),
                             validation=db.take(slice(0, 0)))


def with_modes(config, sparse_input="auto", optimizer="exact"):
  """A copy of `config` with the input path and optimiser mode set."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.sparse_input = sparse_input
    config.optimizer = optimizer
  return config


def load_snippets(path):
  """(the ssb_vae Snippets config reading `path`, the loaded dataset)."""
  config = snippets.get_config(f"method={METHOD}")
  with config.unlocked():
    config.data.path = path
  return config, data_lib.load(data_lib.spec_from_fields(config.data.to_dict()))


def vmapped_program(run, grid) -> Program:
  """Every run of `grid` as one vmapped epoch program on one device."""
  return Program(jax.vmap(run.train_epoch, in_axes=(None, 0), axis_name=RUNS_AXIS),
                 run.arrays, init_stacked(run, grid))
