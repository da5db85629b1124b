"""Training benchmarks: the "train" section of launch.benchmark.

    python -m launch.benchmark --sections=train --data_path=../shared/data/snippets
    python -m launch.benchmark --sections=train --full --data_path=../shared/data/snippets

Every comparison is measured side by side in one process, the contenders
taking turns (common.take_turns), and reported as medians and ratios.
Compilation is timed apart. Figures:

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
  (arguments = data + state, temporaries); the peak resident memory of each
  path in a fresh process (peak_rss).
* roofline: this machine's matmul FLOP/s (a 2048 x 2048 float32 product) and
  memory bandwidth (an in-place update of a 256 MiB array: read + write);
  each input_path step's model FLOPs and optimiser bytes, counted
  analytically (see `step_flops`, `optimizer_bytes`), as achieved rates and
  fractions of those peaks.
* step_breakdown: the vmapped exact step (R = 10 runs, the Snippets subset)
  against the same program with SGD in place of Adam, without the
  reconstruction term, and without both (ablations.py: a registered
  optimiser mode and method, chosen through the config): each part's share
  of the step.
* sweep_estimate: the Snippets 16-bit sweep (150 runs x 30 epochs x 100
  steps) from the per-run step time of the R = 50 contender that runs as
  the sweep does (chunked on a CPU).
* exact_vs_fast_precision (only with --full): p@100 of ssb_vae at levels 0.1
  and 1.0, seeds 0-4, 30 epochs, with each optimiser (the same keys).

--quick: R = 1 and 4, Snippets on 500 items, one round; with --full, 3
epochs and 2 seeds.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from configs import digits
from hashvae import data as data_lib
from hashvae.benchmarks import ablations, common, peak_rss
from hashvae.benchmarks.common import (
  METHOD,
  Consecutive,
  Program,
  first_runs,
  init_one,
  load_snippets,
  median,
  ms_per_step,
  take_turns,
  training_subset,
  with_modes,
)
from hashvae.benchmarks.roofline import machine_peaks, optimizer_bytes, step_flops
from hashvae.core import sharding, sparse
from hashvae.retrieval import metrics
from hashvae.sweep import specs
from hashvae.training import grid as grid_lib

SWEEP = dict(runs=150, epochs=30, steps=100)  # Snippets, 16 bits, released


# --- analytic counts ----------------------------------------------------------


def vmap_vs_sequential(name, config, dataset, runs, epochs, rounds):
  run = specs.make_run(config, dataset)
  grid = first_runs(config, runs)
  vmapped = common.vmapped_program(run, grid)
  vmapped()  # warm-up

  def vmapped_epochs():
    for _ in range(epochs):
      vmapped()

  contenders = dict(vmapped=vmapped_epochs,
                    sequential=Consecutive(run, grid, epochs))
  # How grid.train runs these runs: on CPU devices, chunks of at most
  # config.cpu_runs_per_chunk runs a device, over every device (--cpu_devices).
  mesh = sharding.run_mesh()
  size = specs.chunk_size(config, run, runs, mesh)
  if size > 1 and (size < runs or mesh.devices.size > 1):
    contenders["chunked"] = Consecutive(run, grid, epochs, size, mesh)
  times = take_turns(contenders, rounds)
  # The consecutive contenders time their epoch calls only.
  seq = median(contenders["sequential"].round_seconds)
  vm = median(times["vmapped"])
  items = run.steps_per_epoch * config.batch_size * epochs * runs
  steps = run.steps_per_epoch * epochs * runs
  figure = dict(
      figure="vmap_vs_sequential", dataset=name, runs=runs,
      input_path="sparse" if sparse.use_sparse_input(
          config.model.sparse_input, dataset) else "dense",
      training_items=dataset.database_size, steps_per_epoch=run.steps_per_epoch,
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


def fresh_process_rss(data_path):
  """{path: peak_rss figures} from a fresh process per input path, with
  their ratio when both were measured."""
  rss = {k: peak_rss.in_fresh_process(data_path, k) for k in peak_rss.INPUTS}
  if not any("unavailable" in v for v in rss.values()):
    rss["dense_over_sparse"] = rss["dense"]["above_loaded"] / rss["sparse"]["above_loaded"]
  return rss


def warm_programs(config, dataset, modes):
  """({mode: run}, {mode: its one-run epoch Program, compiled and run once})
  for modes {name: (input path, optimiser)}."""
  runs, programs = {}, {}
  for key, (inputs, optimizer) in modes.items():
    cfg = with_modes(config, inputs, optimizer)
    runs[key] = run = specs.make_run(cfg, dataset)
    programs[key] = Program(run.train_epoch, run.arrays, init_one(run, first_runs(cfg, 1), 0))
    programs[key]()  # warm-up
  return runs, programs


def input_path(config, dataset, rounds, peaks, data_path):
  """Dense vs sparse input (exact optimiser), and exact vs fast (sparse);
  yields the input_path, exact_vs_fast_time and roofline figures and
  returns {mode: median ms per step}."""
  runs, programs = warm_programs(config, dataset, dict(
      dense=("dense", "exact"), sparse=("sparse", "exact"), fast=("sparse", "fast")))
  times = take_turns(programs, rounds)
  steps = runs["dense"].steps_per_epoch
  ms = ms_per_step(times, steps)
  ms_best = {k: 1e3 * min(v) / steps for k, v in times.items()}
  db = dataset.database
  widths = sparse.row_widths(db.inputs)
  # Most steps run with the typical sizes (sparse.typical_batch_sizes); a
  # batch beyond them takes the worst case.
  slots, entries = sparse.typical_batch_sizes(db.inputs, config.batch_size)
  memory = {k: p.memory() for k, p in programs.items()}
  rss = fresh_process_rss(data_path)
  input_bytes = {k: int(sum(a.nbytes for a in jax.tree.leaves(
      runs[k].arrays["inputs"]))) for k in ("dense", "sparse")}
  compiled = lambda k: sum(memory[k][f] for f in ("argument_bytes", "temp_bytes"))
  yield dict(
      figure="input_path", dataset="snippets", runs=1, optimizer="exact",
      steps_per_epoch=steps, rounds=rounds,
      ms_per_step_dense=ms["dense"], ms_per_step_sparse=ms["sparse"],
      dense_over_sparse_time=ms["dense"] / ms["sparse"],
      best_ms_per_step_dense=ms_best["dense"],
      best_ms_per_step_sparse=ms_best["sparse"],
      compile_s_dense=programs["dense"].compile_s,
      compile_s_sparse=programs["sparse"].compile_s,
      padded_width=int(widths.max()), mean_nonzeros=float(widths.mean()),
      row_slots_per_batch=slots, entry_slots_per_batch=entries,
      row_slots_worst_case=sparse.max_batch_rows(widths, config.batch_size,
                                                 dataset.dims),
      input_bytes_dense=input_bytes["dense"],
      input_bytes_sparse=input_bytes["sparse"],
      memory_dense=memory["dense"], memory_sparse=memory["sparse"],
      compiled_bytes_dense=compiled("dense"),
      compiled_bytes_sparse=compiled("sparse"),
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
  yield from roofline(config, dataset, ms, peaks, slots, entries)
  return ms


def roofline(config, dataset, ms, peaks, slots, entries):
  """The roofline figures: each input mode's step (median ms in `ms`)
  against the machine's measured peaks, from analytic FLOP and byte counts.
  `slots`, `entries`: a typical batch's row and entry slots."""
  shape = (dataset.dims, tuple(config.model.hidden), config.bits, dataset.num_classes)
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
  grid = specs.build_grid(config, METHOD)
  keep = np.flatnonzero(np.isin(np.round(grid.levels, 6), levels))
  grid = grid_lib.Grid(grid.method, grid.seeds[keep], grid.levels[keep],
                       {k: v[keep] for k, v in grid.hparams.items()})
  out = {}
  for optimizer in ("exact", "fast"):
    cfg = with_modes(config, "sparse", optimizer)
    start = time.perf_counter()
    result = grid_lib.train_grid(specs.make_run(cfg, dataset), grid, cfg.base_seed)
    seconds = time.perf_counter() - start
    p = np.array([metrics.evaluate(
        result.query_codes[i], result.db_codes[i], dataset.test.labels,
        dataset.database_labels, (100,))["p@100"] for i in range(len(grid))])
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


# --- the section --------------------------------------------------------------


def run(data_path: str, quick: bool = False, full: bool = False):
  """Yields the section's figures, one dict each (see the module docstring)."""
  rounds = 1 if quick else 3
  run_counts = (1, 4) if quick else (1, 10, 50)
  peaks = machine_peaks(rounds)
  yield dict(figure="machine_peaks", **peaks)

  digits_config = digits.get_config(f"method={METHOD}")
  digits_data = data_lib.load(data_lib.spec_from_fields(digits_config.data.to_dict()))
  for runs in run_counts:
    yield vmap_vs_sequential("digits", digits_config, digits_data, runs,
                             epochs=1 if quick else 3, rounds=rounds)

  if not os.path.isdir(data_path):
    yield dict(figure="snippets", skipped=f"no data folder {data_path}")
    return
  config, dataset = load_snippets(data_path)
  subset = training_subset(dataset, 500 if quick else 2000)
  per_run = {}
  for runs in run_counts:
    figure = vmap_vs_sequential("snippets", config, subset, runs, epochs=1,
                                rounds=rounds if runs < 50 else 2)
    figure["note"] = (f"first {subset.database_size} training items "
                      f"({figure['steps_per_epoch']} steps), full vocabulary")
    per_run[f"vmapped_{runs}"] = figure["ms_per_run_step_vmapped"]
    per_run[f"sequential_{runs}"] = figure["ms_per_run_step_sequential"]
    if "ms_per_run_step_chunked" in figure:
      per_run[f"chunked_{runs}"] = figure["ms_per_run_step_chunked"]
    yield figure
  yield ablations.step_breakdown(config, subset, run_counts[1], rounds)
  ms = yield from input_path(config, dataset, rounds, peaks, data_path)
  most = run_counts[-1]
  yield sweep_estimate(per_run, ms["sparse"] / ms["fast"],
                       f"chunked_{most}" if f"chunked_{most}" in per_run
                       else f"vmapped_{most}")
  if full:
    yield exact_vs_fast_precision(config, dataset, quick)
  else:
    yield dict(figure="exact_vs_fast_precision",
               skipped="30-epoch trainings: run python -m launch.benchmark "
                       "--sections=train --full")
