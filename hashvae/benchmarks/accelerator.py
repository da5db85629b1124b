"""The `accelerator` section of launch.benchmark: the figures a GPU or TPU
user asks first, measured on jax's default backend in this one process.

    python -m launch.benchmark --sections=accelerator --data_path=../shared/data/snippets

One JSON figure per part, in the order of --accel_parts (default: the
smallest peak memory first, see `peak_memory`):

- accelerator_evaluate: metrics.evaluate (all metrics, K = 100, 1000, 5000)
  of 80,000 queries against 880,000 items (the 800k corpus's test split
  against its train + validation), 16-bit codes scattered around one random
  centre per class (20 classes); a first call (compiles) and a second.
- accelerator_sweep: the Snippets 16-bit released grid of ssb_vae (5 seeds x
  10 levels = 50 runs; the study's 150 runs are its 3 methods) for
  --accel_epochs epochs, planned and run as the sweep runs it: the sweep
  layer's make_run and build_grid, chunking.plan's chunks, one grid_program
  for all of them and train_grid per chunk (what training.grid.train does,
  without checkpoints and the metrics log), the epoch step compiled ahead
  so that its compilation is timed apart; with the epoch time projected to
  the study's 30 epochs.
- accelerator_scale: one epoch of the first chunk the plan gives that same
  50-run grid on the 800,000-document RCV1-shaped corpus
  (rcv1_like.cached_corpus, loaded through configs/tmc.py, as the scale
  section loads it).

--quick (a smoke run on a CPU, seconds to a minute): the synthetic config's
corpus in the sweep's place (the same 50-run grid shape), a 2,000-document
corpus and 2,000 x 20,000 codes.

The parts share one process, unlike the scale section's fresh ones:
launch.benchmark has opened the device before a section runs, and a TPU
admits one process at a time, while a GPU's first process preallocates most
of its memory. Hence a GPU's or TPU's peak memory covers the earlier parts.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import base, snippets, synthetic, tmc
from hashvae import data as data_lib
from hashvae.benchmarks.peak_rss import resident_bytes
from hashvae.benchmarks.rcv1_like import CLASSES, cached_corpus
from hashvae.core import sharding
from hashvae.retrieval import metrics
from hashvae.sweep import config_check, specs
from hashvae.training import chunking
from hashvae.training import grid as grid_lib
from hashvae.training.specs import PRECISIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARTS = ("evaluate", "sweep", "scale")
METHOD, BITS = "ssb_vae", 16
SEEDS = (0, 1, 2, 3, 4)  # the released study's seeds and levels: 50 runs a method
STUDY_EPOCHS = 30  # what the sweep's epoch time is projected to (configs/snippets.py)
SCALE_ITEMS, QUICK_SCALE_ITEMS = 800_000, 2_000
EVAL_SIZES, QUICK_EVAL_SIZES = (80_000, 880_000), (2_000, 20_000)  # queries, items
KS = (100, 1000, 5000)  # evaluate's default cut-offs, the study's
FLIP = 0.25  # chance that an evaluate code bit differs from its class centre
COMPILE_EVENTS = "/jax/core/compile/"  # jax.monitoring: tracing, lowering, XLA compile


class SettingsError(ValueError):
  """A setting of the accelerator section that is not allowed."""


@dataclasses.dataclass(frozen=True)
class Settings:
  data_path: str = "../shared/data/snippets"  # Snippets folder (the sweep part)
  scale_cache: str = "/tmp/hashvae_scale"  # where the scale corpus is kept
  quick: bool = False
  epochs: int = 1  # epochs of the sweep part timed
  precision: str = "float32"  # config.precision of both training parts
  budget_mb: float = 0.0  # config.state_memory_budget_mb (0: from the device)
  parts: tuple = PARTS

  def __post_init__(self):
    unknown = [p for p in self.parts if p not in PARTS]
    if unknown or not self.parts:
      raise SettingsError(f"accel_parts={list(self.parts)}: name one or more of {PARTS}")
    if self.precision not in PRECISIONS:
      raise SettingsError(f"accel_precision={self.precision!r}: one of {PRECISIONS}")
    if self.epochs < 1:
      raise SettingsError(f"accel_epochs={self.epochs}: must be at least 1")


# --- what every figure names ---------------------------------------------------


def source_commit() -> dict:
  """{"commit": HEAD or None, "dirty": whether tracked files differ from it}."""
  def git(*args):
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None
  try:
    head = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if head else None
  except OSError:  # no git on this machine
    head = changes = None
  return dict(commit=head, dirty=None if changes is None else bool(changes))


_COMPILED = [0.0]  # seconds, summed by the one listener registered below


def compile_seconds() -> float:
  """Seconds this process has spent tracing, lowering and compiling with jax
  so far (jax.monitoring's compile events; the listener is registered on
  the first call and stays: jax keeps listeners for the process)."""
  if not _COMPILED[1:]:
    def listen(event, seconds, **_):
      if event.startswith(COMPILE_EVENTS):
        _COMPILED[0] += seconds
    jax.monitoring.register_event_duration_secs_listener(listen)
    _COMPILED.append(listen)
  return _COMPILED[0]


def device_facts() -> dict:
  device = jax.devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              devices=jax.device_count(), jax=jax.__version__)


def restart_peak_rss() -> bool:
  """Restarts this process's peak resident memory (VmHWM) from the current
  one (Linux: /proc/self/clear_refs); False where that is not possible."""
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    return True
  except OSError:
    return False


def peak_memory(restarted: bool, earlier: list) -> dict:
  """{"peak_memory_bytes", "peak_memory_source"}: on a GPU or TPU the
  largest peak_bytes_in_use of the local devices. jax cannot restart that
  peak, so it covers the `earlier` parts of this process too (hence the
  default order, smallest first). On a CPU, which reports no device memory,
  the process's peak resident memory during this part (`restarted`)."""
  devices = jax.local_devices()
  if devices[0].platform == "cpu":
    if not os.path.exists("/proc/self/status"):
      return dict(peak_memory_bytes=None, peak_memory_source="unavailable: no /proc")
    span = "during this part" if restarted else "since the process started"
    return dict(peak_memory_bytes=resident_bytes()["peak"],
                peak_memory_source=f"process peak resident memory (VmHWM) {span}: "
                "a CPU reports no device memory")
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in devices]
  if None in peaks:
    return dict(peak_memory_bytes=None, peak_memory_source=(
        f"unavailable: {devices[0].platform} memory_stats() has no peak_bytes_in_use"))
  return dict(peak_memory_bytes=int(max(peaks)), peak_memory_source=(
      f"device.memory_stats()['peak_bytes_in_use'], the largest of {len(devices)} "
      "device(s), since the process started"
      + (f": parts {earlier} included" if earlier else "")))


# --- training, as the sweep runs it -------------------------------------------


def set_fields(config, **fields):
  """A copy of `config` with `fields` set, checked as a sweep checks it."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for name, value in fields.items():
      config[name] = value
  config_check.check(config)  # a wrong precision or budget: one ConfigError line
  return config


def train_timed(config, dataset, first_chunk_only: bool = False) -> dict:
  """Trains the config's grid of METHOD for config.epochs epochs as
  training.grid.train runs it (chunking.plan, one grid_program padded to
  the chunk size, train_grid per chunk), or only its first chunk. The epoch
  step is compiled ahead, so that the epochs are steady state. Returns
  wall seconds, the epoch step's compile seconds, the mean seconds of one
  epoch of every trained run, the plan and the runs' mean final loss."""
  start = time.perf_counter()
  run = specs.make_run(config, dataset)
  grid = specs.build_grid(config, METHOD)
  placement = specs.placement(config)
  mesh = sharding.run_mesh(placement.devices)
  plan = chunking.plan(placement, run, len(grid), mesh, config.base_seed)
  size = plan.runs_per_chunk
  program = grid_lib.grid_program(run, config.base_seed, mesh, runs=size)
  example = grid_lib.initial_state(program, grid.take(slice(0, size)))
  compile_start = time.perf_counter()
  step = program.epoch_step.lower(program.arrays, example, jnp.int32(0)).compile()
  epoch_compile_s = time.perf_counter() - compile_start
  del example
  program = dataclasses.replace(program, epoch_step=step)
  starts = range(0, size if first_chunk_only else len(grid), size)
  epoch_seconds, losses = np.zeros(config.epochs), []
  for first in starts:
    ends = []
    out = grid_lib.train_grid(run, grid.take(slice(first, first + size)), config.base_seed,
                              lambda e, n, m, elapsed, ends=ends: ends.append(elapsed),
                              program=program)
    epoch_seconds += np.diff(ends, prepend=0.0)
    losses.append(out.epoch_metrics["loss"][-1])
  trained, devices = sum(len(loss) for loss in losses), int(mesh.devices.size)
  epoch_s = float(epoch_seconds.mean())
  return dict(
      method=METHOD, bits=config.bits, grid_runs=len(grid), runs=trained,
      runs_per_chunk=size, chunks=len(starts), chunks_in_grid=-(-len(grid) // size),
      plan_why=plan.why, run_devices=devices, steps_per_epoch=run.steps_per_epoch,
      epochs_timed=config.epochs, wall_s=time.perf_counter() - start,
      epoch_compile_s=epoch_compile_s, epoch_s=epoch_s,
      steady_s=float(epoch_seconds.sum()),
      ms_per_run_step=1e3 * epoch_s / (trained * run.steps_per_epoch),
      runs_per_second=trained / epoch_s, runs_per_second_per_device=trained / epoch_s / devices,
      mean_final_loss=float(np.nanmean(np.concatenate(losses))))


def sweep_part(settings: Settings) -> dict:
  """The Snippets 16-bit released grid of METHOD (--quick: the synthetic
  corpus, the same seeds and levels)."""
  if settings.quick:
    config, name = synthetic.get_config(f"method={METHOD},bits={BITS}"), "synthetic (--quick)"
  elif not os.path.isdir(settings.data_path):
    return dict(figure="accelerator_sweep",
                skipped=f"no Snippets folder {settings.data_path} (--data_path)")
  else:
    config, name = snippets.get_config(f"method={METHOD},bits={BITS}"), "snippets"
    with config.unlocked():
      config.data.path = settings.data_path
  config = set_fields(config, seeds=SEEDS, levels=base.RELEASED_LEVELS, epochs=settings.epochs,
                      precision=settings.precision,
                      state_memory_budget_mb=float(settings.budget_mb))
  start = time.perf_counter()
  dataset = data_lib.load(specs.data_spec(config))
  load_s = time.perf_counter() - start
  figure = train_timed(config, dataset)
  once = load_s + figure["wall_s"] - figure["steady_s"]  # load, compile, init, encode
  return dict(figure="accelerator_sweep", dataset=name, training_items=len(dataset.train),
              load_s=load_s, **figure, projected_epochs=STUDY_EPOCHS,
              projected_s=once + STUDY_EPOCHS * figure["epoch_s"],
              how="projected_s: load + wall - the timed epochs, plus projected_epochs x "
                  "epoch_s (evaluation of the codes not included)")


def scale_part(settings: Settings) -> dict:
  """One epoch of the first chunk of the 50-run grid on the scale corpus."""
  items = QUICK_SCALE_ITEMS if settings.quick else SCALE_ITEMS
  path, facts = cached_corpus(settings.scale_cache, items)
  config = tmc.get_config(f"method={METHOD},bits={BITS}")
  with config.unlocked():
    config.data.path = path
  config = set_fields(config, seeds=SEEDS, levels=base.RELEASED_LEVELS, epochs=1,
                      precision=settings.precision,
                      state_memory_budget_mb=float(settings.budget_mb))
  start = time.perf_counter()
  dataset = data_lib.load(specs.data_spec(config))
  load_s = time.perf_counter() - start
  figure = train_timed(config, dataset, first_chunk_only=True)
  return dict(figure="accelerator_scale", train_items=len(dataset.train),
              database_items=dataset.database_size, queries=len(dataset.test),
              corpus=path, corpus_generate_s=facts["generate_s"],
              corpus_cached=facts["cached"], load_s=load_s, **figure)


# --- evaluation ------------------------------------------------------------------


def clustered_codes(queries: int, items: int, bits: int = BITS, classes: int = CLASSES,
                    seed: int = 0):
  """(query_codes [queries, bits], db_codes [items, bits]) uint8 and their
  labels ([queries], [items] int): each code its class's random centre with
  each bit flipped with chance FLIP."""
  rng = np.random.default_rng(seed)
  centres = rng.integers(0, 2, (classes, bits), dtype=np.uint8)

  def draw(n):
    labels = rng.integers(0, classes, n)
    return centres[labels] ^ (rng.random((n, bits)) < FLIP).astype(np.uint8), labels

  (query_codes, query_labels), (db_codes, db_labels) = draw(queries), draw(items)
  return query_codes, db_codes, query_labels, db_labels


def evaluate_part(settings: Settings) -> dict:
  """metrics.evaluate of one run's codes at the scale corpus's size, twice."""
  queries, items = QUICK_EVAL_SIZES if settings.quick else EVAL_SIZES
  codes = clustered_codes(queries, items)
  start = time.perf_counter()
  metrics.evaluate(*codes, ks=KS)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  scores = metrics.evaluate(*codes, ks=KS)
  steady_s = time.perf_counter() - start
  devices = jax.device_count()
  return dict(figure="accelerator_evaluate", queries=queries, items=items, bits=BITS,
              classes=CLASSES, ks=list(KS), metrics=len(scores), first_call_s=first_s,
              steady_s=steady_s, wall_s=first_s + steady_s,
              runs_per_second=1 / steady_s, runs_per_second_per_device=1 / steady_s / devices,
              **{k: scores[k] for k in ("p@100", "map@100", "p@1000", "ndcg@100")},
              how="a run = one run's codes evaluated; steady_s: the second call")


# --- the section ----------------------------------------------------------------


PART_FUNCTIONS = dict(evaluate=evaluate_part, sweep=sweep_part, scale=scale_part)


def run(settings: Settings):
  """Yields one figure per part of settings.parts, in that order, each with
  the device, the precision, the commit, its compile seconds (every jax
  compilation during the part) and its peak memory. A part that fails on
  the device (e.g. out of memory) yields its reason; the next part runs."""
  shared = dict(source_commit(), precision=settings.precision,
                state_memory_budget_mb=float(settings.budget_mb), quick=settings.quick)
  done = []
  for part in settings.parts:
    gc.collect()  # the last part's arrays: freed before this part's peak starts
    restarted, compiled = restart_peak_rss(), compile_seconds()
    try:
      figure = PART_FUNCTIONS[part](settings)
    except (jax.errors.JaxRuntimeError, MemoryError) as e:
      figure = dict(figure=f"accelerator_{part}",
                    failed=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}")
    figure.update(compile_s=compile_seconds() - compiled, **peak_memory(restarted, done),
                  **device_facts(), **shared)
    done.append(part)
    yield figure
