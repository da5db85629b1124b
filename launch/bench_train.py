"""Training benchmarks: the "train" section of launch.benchmark.

    python -m launch.benchmark --sections=train --data_path=../shared/data/snippets
    python -m launch.bench_train --full --data_path=../shared/data/snippets

Every comparison is measured side by side in one process, the contenders
taking turns (A, B, A, B, ...), and reported as medians and ratios: other
work on the machine slows both alike. Compilation is timed apart. Figures:

* vmap_vs_sequential: R runs (ssb_vae, the released weights, R = 1, 10, 50)
  as one `jit(vmap(train_epoch))` program against the same R runs one after
  another through `jit(train_epoch)`; items x epochs per second of each.
  Where the sweep would not run them as that one program, also the R runs
  as the experiment runs them ("chunked"): consecutive chunks of at most
  cpu_runs_per_chunk runs a CPU device, over every device (launch.benchmark
  --cpu_devices splits the CPU into devices as the training entry points
  do; the other contenders use one device).
  Snippets trains on its first 2,000 items (20 steps an epoch, the full
  10,000-word vocabulary) for one timed epoch, so that 50 runs one at a time
  stay affordable on 2 cores; digits on all of its 1,437 items for 3 epochs.
* input_path: dense rows against the padded sparse rows (and, on the sparse
  path, the exact against the fast optimiser) on the whole Snippets training
  set, one run: ms per step, and XLA's memory analysis of the compiled epoch
  (arguments = data + state, temporaries).
* roofline: this machine's matmul FLOP/s (a 2048 x 2048 float32 product) and
  memory bandwidth (an in-place update of a 256 MiB array: read + write);
  each input_path step's model FLOPs and optimiser bytes, counted
  analytically (see `step_flops`, `optimizer_bytes`), as achieved rates and
  fractions of those peaks.
* step_breakdown: the vmapped exact step (R = 10 runs, the Snippets subset)
  against the same program with SGD in place of Adam, without the
  reconstruction term, and without both: each part's share of the step.
* sweep_estimate: the Snippets 16-bit sweep (150 runs x 30 epochs x 100
  steps) from the per-run step time of the R = 50 contender that runs as
  the sweep does (chunked on a CPU).
* exact_vs_fast_precision (only with --full): p@100 of ssb_vae at levels 0.1
  and 1.0, seeds 0-4, 30 epochs, with each optimiser (the same keys).

--quick: R = 1 and 4, Snippets on 500 items, one round; with --full, 3
epochs and 2 seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from configs import digits, snippets
from hashvae import data as data_lib
from hashvae import grid as grid_lib
from hashvae import methods, metrics, sharding, train

METHOD = "ssb_vae"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = dict(runs=150, epochs=30, steps=100)  # Snippets, 16 bits, released
F32 = 4  # bytes


# --- timing -------------------------------------------------------------


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


# --- runs ---------------------------------------------------------------


def first_runs(config, runs: int) -> grid_lib.Grid:
  """The first `runs` rows of the config's grid (levels cycled, then seeds)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.seeds = tuple(range(-(-runs // len(config.levels))))
  grid = grid_lib.build_grid(config, METHOD)
  rows = np.arange(runs)
  return grid_lib.Grid(grid.method, grid.seeds[rows], grid.levels[rows],
                       {k: v[rows] for k, v in grid.hparams.items()})


def init_stacked(run, grid: grid_lib.Grid, base_seed: int = 0):
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  return jax.jit(jax.vmap(run.init, in_axes=(None, 0, 0, 0)))(
      run.arrays, grid.keys(base_seed), f32(grid.levels),
      {k: f32(v) for k, v in grid.hparams.items()})


def init_one(run, grid: grid_lib.Grid, i: int, base_seed: int = 0):
  return jax.jit(run.init)(run.arrays, grid.keys(base_seed)[i],
                           jnp.float32(grid.levels[i]),
                           {k: jnp.float32(v[i]) for k, v in grid.hparams.items()})


class Consecutive:
  """The runs of a grid as consecutive programs of `size` runs, `epochs`
  epochs each. Size 1 is one run at a time through `jit(train_epoch)` on
  one device; more is how experiment.train_method runs a grid: chunks of
  `size` runs through one compiled grid.grid_functions program, the run
  axis split over `mesh` (default: every device), a narrower last chunk
  padded. Only the epoch calls are timed (init is not, as for the vmapped
  program). `last` is the trained state of the last run (size 1) or of the
  last chunk's runs ([runs, ...], padding dropped); `round_seconds` holds
  each call's timed seconds."""

  def __init__(self, run, grid, epochs, size: int = 1, mesh=None):
    self.run, self.grid, self.epochs, self.size = run, grid, epochs, size
    if size == 1:
      self.program = Program(run.train_epoch, run.arrays, init_one(run, grid, 0))
    else:
      self.functions = grid_lib.grid_functions(run, 0, mesh, size)
    self.train(0, epochs=1)  # warm-up: compiles
    self.round_seconds = []

  def train(self, first: int, epochs: int) -> float:
    """Trains the chunk starting at run `first`; returns the seconds its
    epoch calls took."""
    if self.size == 1:
      program = self.program
      program.state = init_one(self.run, self.grid, first)
      jax.block_until_ready(program.state)
      start = time.perf_counter()
      for _ in range(epochs):
        program()
      self.last = program.state
      return time.perf_counter() - start
    program = grid_lib.grid_program(
        self.run, self.grid.take(slice(first, first + self.size)), 0,
        functions=self.functions)  # pads a narrower last chunk
    carry = jax.block_until_ready(program.state)
    start = time.perf_counter()
    for epoch in range(epochs):  # waits for each epoch, as train_grid does
      carry, terms = program.epoch_step(program.arrays, carry, jnp.int32(epoch))
      jax.block_until_ready(terms)
    self.last = jax.tree.map(lambda a: a[:program.runs], carry.train)
    return time.perf_counter() - start

  def __call__(self):
    self.round_seconds.append(sum(
        self.train(first, self.epochs)
        for first in range(0, len(self.grid), self.size)))


def training_subset(dataset, items: int):
  """The first `items` database items as the training set (validation empty)."""
  db = dataset.database
  head = lambda x: x[:items]
  split = data_lib.Split(head(db.inputs), head(db.targets), head(db.labels))
  empty = data_lib.Split(db.inputs[:0], db.targets[:0], db.labels[:0])
  return dataclasses.replace(dataset, train=split, validation=empty)


def with_modes(config, sparse_input="auto", optimizer="exact"):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.sparse_input = sparse_input
    config.optimizer = optimizer
  return config


# --- analytic counts ----------------------------------------------------


def step_flops(dims, hidden, bits, classes, batch, first_width) -> int:
  """FLOPs (2 x multiply-adds) of one ssb_vae training step's matmuls.

  first_width: the inputs the first layer reads per item (dims when dense;
  the entry slots per item when sparse). Forward: the encoder layers, the
  code and classifier heads, the decoder (bits -> dims) and the B x B pairwise Gram
  matrices of codes and predictions. Backward: twice the forward for every
  layer (weight and input gradients) except the first (weights only).
  Elementwise work (softmax over dims, Adam) is not counted.
  """
  widths = (first_width,) + tuple(hidden)
  first = 2 * batch * widths[0] * widths[1]
  pairs = zip(widths[1:-1], widths[2:], strict=False)  # layer 2 onwards
  rest = sum(2 * batch * a * b for a, b in pairs)
  rest += 2 * batch * hidden[-1] * (bits + classes)  # code head, classifier
  rest += 2 * batch * bits * dims  # decoder
  rest += 2 * batch * batch * (bits + classes)  # pairwise Gram matrices
  return int(2 * first + 3 * rest)


def param_count(dims, hidden, bits, classes) -> tuple[int, int]:
  """(first kernel's weights, every other weight) of the model."""
  widths = (dims,) + tuple(hidden)
  first = dims * hidden[0]
  pairs = zip(widths[1:-1], widths[2:], strict=False)  # layer 2 onwards
  rest = hidden[0] + sum(a * b + b for a, b in pairs)
  rest += 2 * sum(hidden)  # batch-norm scale and bias
  rest += (hidden[-1] + 1) * (bits + classes)  # code head, classifier
  rest += (bits + 1) * dims  # decoder
  return first, rest


def optimizer_bytes(dims, hidden, bits, classes, mode, row_slots) -> int:
  """Bytes Adam moves per step, at the least.

  Dense Adam (optax) reads gradient, weight and both moments and writes the
  weight and moments: 7 float32 per weight. The sparse path's exact mode
  defers the first kernel's moment decay (train.dense_adam_rows): per
  weight it reads weight and both moments and writes the weight (4), plus
  the moments' row slots read and written and the [row_slots, hidden]
  gradient rows read (5 per row-slot weight); the decay itself, 4 per weight
  once every DECAY_CHUNK steps, is left out. Fast mode moves only the row
  slots of the first kernel (weight and moments, read and written, and the
  gradient rows: 7 per row-slot weight).
  """
  first, rest = param_count(dims, hidden, bits, classes)
  row_grads = row_slots * hidden[0]
  kernel = {"dense": 7 * first, "sparse": 4 * first + 5 * row_grads,
            "fast": 7 * row_grads}[mode]
  return int((kernel + 7 * rest) * F32)


def machine_peaks(rounds: int) -> dict:
  """Measured float32 matmul FLOP/s and copy bandwidth of this machine."""
  n = 2048
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot).lower(a, a).compile()
  jax.block_until_ready(dot(a, a))
  big = jnp.ones((64 * 2**20,), jnp.float32)  # 256 MiB
  scale = jax.jit(lambda x: x * 1.0000001, donate_argnums=0).lower(big).compile()
  state = dict(big=scale(big))
  del big

  def copy():
    state["big"] = scale(state["big"])
    jax.block_until_ready(state["big"])

  times = take_turns(dict(dot=lambda: jax.block_until_ready(dot(a, a)),
                          copy=copy), max(rounds, 3) * 2)
  return dict(matmul_flops_per_s=2 * n**3 / min(times["dot"]),
              copy_bytes_per_s=2 * state["big"].nbytes / min(times["copy"]),
              how="best of the rounds: float32 2048^3 jnp.dot; in-place x * c "
                  "over 256 MiB (bytes read + written)")


# --- figures ------------------------------------------------------------


def vmap_vs_sequential(name, config, dataset, runs, epochs, rounds):
  run = train.make_run(config, dataset)
  grid = first_runs(config, runs)
  vmapped = Program(jax.vmap(run.train_epoch, in_axes=(None, 0),
                              axis_name=train.RUNS_AXIS), run.arrays,
                    init_stacked(run, grid))
  vmapped()  # warm-up

  def vmapped_epochs():
    for _ in range(epochs):
      vmapped()

  contenders = dict(vmapped=vmapped_epochs,
                    sequential=Consecutive(run, grid, epochs))
  # How train_method runs these runs: on CPU devices, chunks of at most
  # config.cpu_runs_per_chunk runs a device, over every device (--cpu_devices).
  mesh = sharding.run_mesh()
  size = grid_lib.chunk_size(config, run, runs, mesh)
  if size > 1 and (size < runs or mesh.devices.size > 1):
    contenders["chunked"] = Consecutive(run, grid, epochs, size, mesh)
  times = take_turns(contenders, rounds)
  # Every contender's figure is the median of its rounds (slow phases of
  # the machine only ever lengthen a round); the consecutive ones time
  # their epoch calls only.
  median = lambda seconds: float(np.median(seconds))
  seq = median(contenders["sequential"].round_seconds)
  vm = median(times["vmapped"])
  items = run.steps_per_epoch * config.batch_size * epochs * runs
  steps = run.steps_per_epoch * epochs * runs
  figure = dict(
      figure="vmap_vs_sequential", dataset=name, runs=runs,
      input_path="sparse" if train.use_sparse_input(
          config.model.sparse_input, dataset) else "dense",
      training_items=len(dataset.database), steps_per_epoch=run.steps_per_epoch,
      epochs_timed=epochs, rounds=rounds,
      compile_s_vmapped=vmapped.compile_s,
      compile_s_single=contenders["sequential"].program.compile_s,
      vmapped_items_epochs_per_s=items / vm,
      sequential_items_epochs_per_s=items / seq,
      vmapped_over_sequential=seq / vm,
      ms_per_run_step_vmapped=1e3 * vm / steps,
      ms_per_run_step_sequential=1e3 * seq / steps)
  if "chunked" in contenders:
    chunked = median(contenders["chunked"].round_seconds)
    figure.update(runs_per_chunk=size, devices=int(mesh.devices.size),
                  chunked_over_sequential=seq / chunked,
                  ms_per_run_step_chunked=1e3 * chunked / steps)
  return figure


def resident_bytes() -> dict:
  """{"now", "peak"}: this process's resident memory (Linux /proc)."""
  fields = {}
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      name, _, value = line.partition(":")
      if name in ("VmRSS", "VmHWM"):
        fields[name] = int(value.split()[0]) * 1024  # kB
  return dict(now=fields["VmRSS"], peak=fields["VmHWM"])


def training_peak_rss(data_path: str, inputs: str) -> dict:
  """In this process: load Snippets, reset the peak resident memory to the
  current one (Linux: /proc/self/clear_refs), then build, compile and train
  one run for one epoch on the `inputs` path ("dense" or "sparse", exact
  Adam). Returns bytes: resident after loading, and the peak above that.
  Loading's own transient peak (vectorising the corpus) is left out: it is
  the same for both paths and larger than either."""
  config, dataset = load_snippets(data_path)
  with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
    f.write("5")
  loaded = resident_bytes()["now"]
  run = train.make_run(with_modes(config, inputs, "exact"), dataset)
  Program(run.train_epoch, run.arrays, init_one(run, first_runs(config, 1), 0))()
  return dict(loaded=loaded, above_loaded=resident_bytes()["peak"] - loaded)


def peak_rss(data_path: str, inputs: str) -> dict:
  """training_peak_rss in a fresh process, or {"unavailable": reason}."""
  code = ("import json; from launch import bench_train; print(json.dumps("
          f"bench_train.training_peak_rss({data_path!r}, {inputs!r})))")
  done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                        text=True)
  if done.returncode != 0:  # e.g. no /proc (not Linux)
    return dict(unavailable=done.stderr.strip().splitlines()[-1][:200])
  return json.loads(done.stdout.splitlines()[-1])


def input_path(config, dataset, rounds, peaks, data_path):
  """Dense vs sparse input (exact optimiser), and exact vs fast (sparse)."""
  modes = dict(dense=("dense", "exact"), sparse=("sparse", "exact"),
               fast=("sparse", "fast"))
  programs, runs = {}, {}
  for key, (inputs, optimizer) in modes.items():
    cfg = with_modes(config, inputs, optimizer)
    run = train.make_run(cfg, dataset)
    state = init_one(run, first_runs(cfg, 1), 0)
    programs[key] = Program(run.train_epoch, run.arrays, state)
    programs[key]()  # warm-up
    runs[key] = run
  times = take_turns(programs, rounds)
  steps = runs["dense"].steps_per_epoch
  ms = {k: 1e3 * float(np.median(v)) / steps for k, v in times.items()}
  ms_best = {k: 1e3 * min(v) / steps for k, v in times.items()}
  db = dataset.database
  widths = train.row_widths(db.inputs)
  width = int(widths.max())
  # Most steps run with the typical sizes (train.typical_batch_sizes); a
  # batch beyond them takes the worst case.
  slots, entries = train.typical_batch_sizes((db.inputs,), config.batch_size)
  shape = (dataset.dims, tuple(config.model.hidden), config.bits,
           dataset.num_classes)
  memory = {k: p.memory() for k, p in programs.items()}
  rss = {k: peak_rss(data_path, k) for k in ("dense", "sparse")}
  if not any("unavailable" in v for v in rss.values()):
    rss["dense_over_sparse"] = (rss["dense"]["above_loaded"]
                                / rss["sparse"]["above_loaded"])
  input_bytes = {k: int(sum(a.nbytes for a in jax.tree.leaves(
      runs[k].arrays["inputs"]))) for k in ("dense", "sparse")}
  yield dict(
      figure="input_path", dataset="snippets", runs=1, optimizer="exact",
      steps_per_epoch=steps, rounds=rounds,
      ms_per_step_dense=ms["dense"], ms_per_step_sparse=ms["sparse"],
      dense_over_sparse_time=ms["dense"] / ms["sparse"],
      best_ms_per_step_dense=ms_best["dense"],
      best_ms_per_step_sparse=ms_best["sparse"],
      compile_s_dense=programs["dense"].compile_s,
      compile_s_sparse=programs["sparse"].compile_s,
      padded_width=width, mean_nonzeros=float(widths.mean()),
      row_slots_per_batch=slots, entry_slots_per_batch=entries,
      row_slots_worst_case=train.max_batch_rows(widths, config.batch_size,
                                                dataset.dims),
      input_bytes_dense=input_bytes["dense"],
      input_bytes_sparse=input_bytes["sparse"],
      memory_dense=memory["dense"], memory_sparse=memory["sparse"],
      compiled_bytes_dense=sum(memory["dense"][k] for k in (
          "argument_bytes", "temp_bytes")),
      compiled_bytes_sparse=sum(memory["sparse"][k] for k in (
          "argument_bytes", "temp_bytes")),
      peak_rss=rss,
      how="median of interleaved epochs / steps; compiled bytes from XLA's "
          "memory_analysis of the compiled epoch (arguments + temporaries; "
          "the output aliases the donated state); peak_rss: a fresh process "
          "per path loads the data (resident: `loaded`), then the peak "
          "resident memory above that while it builds, compiles and trains "
          "one epoch on the path (`above_loaded`)")
  yield dict(
      figure="exact_vs_fast_time", dataset="snippets", runs=1,
      input_path="sparse", rounds=rounds,
      ms_per_step_exact=ms["sparse"], ms_per_step_fast=ms["fast"],
      exact_over_fast_time=ms["sparse"] / ms["fast"],
      s_per_epoch_exact=ms["sparse"] * steps / 1e3,
      s_per_epoch_fast=ms["fast"] * steps / 1e3,
      compile_s_fast=programs["fast"].compile_s, memory_fast=memory["fast"])
  per_item = entries / config.batch_size
  rows = dict(dense=("dense", dataset.dims), sparse=("sparse", per_item),
              fast=("fast", per_item))
  for key, (opt_mode, first_width) in rows.items():
    flops = step_flops(*shape[:2], config.bits, dataset.num_classes,
                       config.batch_size, first_width)
    moved = optimizer_bytes(*shape, opt_mode, slots)
    seconds = ms[key] / 1e3
    yield dict(
        figure="roofline", dataset="snippets", mode=key,
        ms_per_step=ms[key], model_flops_per_step=flops,
        achieved_flops_per_s=flops / seconds,
        fraction_of_matmul_peak=flops / seconds / peaks["matmul_flops_per_s"],
        optimizer_bytes_per_step=moved,
        achieved_optimizer_bytes_per_s=moved / seconds,
        fraction_of_bandwidth=moved / seconds / peaks["copy_bytes_per_s"],
        floor_ms_matmul=1e3 * flops / peaks["matmul_flops_per_s"],
        floor_ms_optimizer=1e3 * moved / peaks["copy_bytes_per_s"],
        how="model FLOPs of the matmuls (step_flops) and Adam's bytes "
            "(optimizer_bytes), counted analytically; floors = those counts "
            "at the measured peaks")
  return ms


def without_adam():
  """Plain SGD in place of Adam (every weight; the first kernel by rows)."""
  sgd = lambda optimiser, grads, opt_state, params, lr: (
      jax.tree.map(lambda p, g: p - lr * g, params, grads), opt_state)
  sgd_rows = lambda kernel, mu, nu, rows, grad_rows, count, lr, deferred: (
      kernel.at[rows].add(-lr * grad_rows, mode="drop"), mu, nu)
  return [mock.patch.object(train, "adam", sgd),
          mock.patch.object(train, "dense_adam_rows", sgd_rows)]


def without_reconstruction():
  """A zero reconstruction loss: the decoder and its softmax compile away."""
  zero = lambda out, batch, options: jnp.zeros(out["recon_logits"].shape[0])
  return [mock.patch.object(methods, "reconstruction", zero)]


def step_breakdown(config, dataset, runs, rounds):
  """Where a vmapped exact sparse step's time goes: the same program with
  Adam replaced by SGD, without the reconstruction term, and without both,
  timed side by side. The differences are each part's share (the parts
  overlap a little: they share memory traffic)."""
  variants = dict(full=[], no_adam=without_adam(),
                  no_reconstruction=without_reconstruction(),
                  neither=without_adam() + without_reconstruction())
  cfg = with_modes(config, "sparse", "exact")
  grid = first_runs(cfg, runs)
  programs = {}
  for name, patches in variants.items():
    with contextlib.ExitStack() as stack:  # patched while tracing only
      for patch in patches:
        stack.enter_context(patch)
      run = train.make_run(cfg, dataset)
      programs[name] = Program(jax.vmap(run.train_epoch, in_axes=(None, 0),
                              axis_name=train.RUNS_AXIS),
                               run.arrays, init_stacked(run, grid))
    programs[name]()  # warm-up
  times = take_turns(programs, rounds)
  steps = run.steps_per_epoch * runs
  ms = {k: 1e3 * float(np.median(v)) / steps for k, v in times.items()}
  share = lambda k: (ms["full"] - ms[k]) / ms["full"]
  return dict(
      figure="step_breakdown", dataset="snippets", runs=runs, rounds=rounds,
      training_items=len(dataset.database), ms_per_run_step=ms,
      adam_share=share("no_adam"),
      reconstruction_share=share("no_reconstruction"),
      rest_share=ms["neither"] / ms["full"],
      padded_width=int(train.row_widths(dataset.database.inputs).max()),
      mean_nonzeros=float(train.row_widths(dataset.database.inputs).mean()),
      how="median ms per run-step of each variant, one vmapped program each; "
          "share = 1 - variant / full")


def sweep_estimate(per_run_step_ms: dict, fast_ratio: float, as_swept: str):
  """The 150-run, 30-epoch Snippets sweep from measured per-run step times:
  those of `as_swept`, the contender that runs the runs as the sweep does."""
  steps = SWEEP["runs"] * SWEEP["epochs"] * SWEEP["steps"]
  exact_min = steps * per_run_step_ms[as_swept] / 1e3 / 60
  return dict(
      figure="sweep_estimate", dataset="snippets", bits=16, **SWEEP,
      per_run_step_ms=per_run_step_ms, from_contender=as_swept,
      exact_minutes=exact_min, fast_minutes=exact_min / fast_ratio,
      target_minutes=dict(exact=45, fast=15),
      how="runs x epochs x steps x the ms per run-step of the contender "
          "that runs the most runs as the sweep does (vmap_vs_sequential: "
          "chunked, over every device, where the sweep would not run them "
          "as one program on one device, else vmapped; exact optimiser, "
          "sparse input); fast = that / the "
          "exact-over-fast step time ratio (exact_vs_fast_time)")


def exact_vs_fast_precision(config, dataset, quick):
  """p@100 after a full training with each optimiser, the same runs."""
  config = config.copy_and_resolve_references()
  levels = (0.1, 1.0)
  with config.unlocked():
    config.seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    if quick:
      config.epochs = 3
  grid = grid_lib.build_grid(config, METHOD)
  keep = np.flatnonzero(np.isin(np.round(grid.levels, 6), levels))
  grid = grid_lib.Grid(grid.method, grid.seeds[keep], grid.levels[keep],
                       {k: v[keep] for k, v in grid.hparams.items()})
  out = {}
  for optimizer in ("exact", "fast"):
    cfg = with_modes(config, "sparse", optimizer)
    start = time.perf_counter()
    result = grid_lib.train_grid(train.make_run(cfg, dataset), grid,
                                 cfg.base_seed)
    seconds = time.perf_counter() - start
    p = np.array([metrics.evaluate(
        result.query_codes[i], result.db_codes[i], dataset.test.labels,
        dataset.database.labels, (100,))["p@100"] for i in range(len(grid))])
    out[optimizer] = dict(
        seconds=seconds,
        p_at_100={str(level): float(p[np.isclose(grid.levels, level)].mean())
                  for level in levels},
        p_at_100_runs=p.round(4).tolist())
  return dict(
      figure="exact_vs_fast_precision", dataset="snippets", method=METHOD,
      bits=config.bits, epochs=config.epochs, seeds=list(config.seeds),
      levels=list(levels), exact=out["exact"], fast=out["fast"],
      fast_minus_exact={str(level): out["fast"]["p_at_100"][str(level)]
                        - out["exact"]["p_at_100"][str(level)]
                        for level in levels})


# --- entry --------------------------------------------------------------


def load_snippets(path):
  config = snippets.get_config(f"method={METHOD}")
  with config.unlocked():
    config.data.path = path
  return config, data_lib.load(config.data)


def run(flags):
  quick = bool(flags.quick)
  full = bool(getattr(flags, "full", False))
  rounds = 1 if quick else 3
  run_counts = (1, 4) if quick else (1, 10, 50)
  peaks = machine_peaks(rounds)
  yield dict(figure="machine_peaks", **peaks)

  digits_config = digits.get_config(f"method={METHOD}")
  digits_data = data_lib.load(digits_config.data)
  for runs in run_counts:
    yield vmap_vs_sequential("digits", digits_config, digits_data, runs,
                             epochs=1 if quick else 3, rounds=rounds)

  if not os.path.isdir(flags.data_path):
    yield dict(figure="snippets", skipped=f"no data folder {flags.data_path}")
    return
  config, dataset = load_snippets(flags.data_path)
  subset = training_subset(dataset, 500 if quick else 2000)
  per_run = {}
  for runs in run_counts:
    figure = vmap_vs_sequential("snippets", config, subset, runs, epochs=1,
                                rounds=rounds if runs < 50 else 2)
    figure["note"] = (f"first {len(subset.database)} training items "
                      f"({figure['steps_per_epoch']} steps), full vocabulary")
    per_run[f"vmapped_{runs}"] = figure["ms_per_run_step_vmapped"]
    per_run[f"sequential_{runs}"] = figure["ms_per_run_step_sequential"]
    if "ms_per_run_step_chunked" in figure:
      per_run[f"chunked_{runs}"] = figure["ms_per_run_step_chunked"]
    yield figure
  yield step_breakdown(config, subset, run_counts[1], rounds)
  ms = yield from input_path(config, dataset, rounds, peaks, flags.data_path)
  most = run_counts[-1]
  yield sweep_estimate(per_run, ms["sparse"] / ms["fast"],
                       f"chunked_{most}" if f"chunked_{most}" in per_run
                       else f"vmapped_{most}")
  if full:
    yield exact_vs_fast_precision(config, dataset, quick)
  else:
    yield dict(figure="exact_vs_fast_precision",
               skipped="30-epoch trainings: run python -m launch.bench_train "
                       "--full")


def _main():
  from absl import app, flags

  from launch import cpu_devices

  flags.DEFINE_string("data_path", "../shared/data/snippets",
                      "Snippets folder (train.txt, test.txt).")
  flags.DEFINE_bool("quick", False, "Smaller sizes, for a smoke run.")
  flags.DEFINE_bool("full", False, "Also train 30 epochs with each optimiser "
                    "and compare p@100.")

  def main(argv):
    del argv
    cpu_devices.apply()
    for figure in run(flags.FLAGS):
      print(json.dumps(dict(section="train", **figure)), flush=True)

  app.run(main)


if __name__ == "__main__":
  _main()
