"""How loading, training and evaluation grow with the corpus: RCV1-shaped
synthetic corpora of 100k to 800k training documents.

    python -m launch.benchmark --sections=scale [--scale_sizes=100000,200000] [--quick]

Each size is a seeded synthetic corpus in the VDSH .mat layout (`rcv1_like`:
20 classes, 10,000 terms, about 60 nonzeros a document, a tenth as many
validation (cv) and test (query) documents as training ones), written once
to the cache folder and reused. Each size is measured in fresh processes, so
that no peak or cache leaks from one size to the next:

- `python -m hashvae.benchmarks.scale measure MAT RUNS CPU_DEVICES CODES`
  loads the .mat through configs/tmc.py, builds one chunk of RUNS ssb_vae
  runs (seeds 0.., level 0.1, 16 bits), compiles the epoch step and trains
  one epoch, each timed apart, and saves run 0's codes;
- `python -m hashvae.benchmarks.scale evaluate CODES CPU_DEVICES` loads only
  those codes and labels and times metrics.evaluate (K = 100, all metrics),
  so that its memory is not hidden under training's peak.

A last figure gives each measure's growth exponent: the least-squares slope
of log(figure) against log(training documents) over the sizes measured
(1: linear; 0: flat, as compilation should be).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from hashvae.benchmarks.peak_rss import resident_bytes
from hashvae.benchmarks.rcv1_like import cached_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "hashvae.benchmarks.scale"

TRAIN_SIZES = (100_000, 200_000, 400_000, 800_000)
QUICK_SIZES = (2_000, 4_000)
SMALLEST = 1_000  # queries = a tenth, at least K of them
CACHE = "/tmp/hashvae_scale"
RUNS = 5  # one chunk, as grid.train runs cpu_runs_per_chunk = 5 on a CPU device
METHOD, BITS, LEVEL, K = "ssb_vae", 16, 0.1, 100

# The measures whose growth is fitted (bytes and seconds).
GROWING = ("load_s", "loaded_rss_bytes", "make_run_s", "init_s", "compile_s", "epoch_s",
           "ms_per_run_step", "encode_compile_s", "encode_s", "peak_rss_bytes",
           "evaluate_first_s", "evaluate_s", "evaluate_peak_above_bytes")


# --- growth ------------------------------------------------------------------


def growth_exponent(sizes, values):
  """The least-squares slope of log(values) against log(sizes): b in
  values ~ a * sizes**b. None with fewer than two distinct sizes or a value
  that is not positive (no logarithm)."""
  x, y = np.asarray(sizes, np.float64), np.asarray(values, np.float64)
  if len(np.unique(x)) < 2 or not (np.all(np.isfinite(y)) and np.all(y > 0)):
    return None
  return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# --- the child processes -----------------------------------------------------


def measure(path: str, runs: int, cpu_devices: int, codes_path: str) -> dict:
  """In this (fresh) process: load the .mat, train one chunk of `runs` runs
  for one epoch, save run 0's codes and labels to `codes_path` (.npz).

  Returns seconds (load; make_run: the device arrays; init: its compile
  included; compile: the epoch step's; epoch: one epoch of every run, and
  its milliseconds per run and step; encode_compile, encode: the codes of
  the database and the queries), bytes (resident after loading; the peak
  of the whole process, loading included) and the epoch's mean loss."""
  from hashvae.core import sharding

  sharding.split_cpu(cpu_devices)  # as launch.main splits the CPU, before jax starts
  import jax
  import jax.numpy as jnp

  from configs import tmc
  from hashvae import data as data_lib
  from hashvae.sweep import specs
  from hashvae.training import grid as grid_lib

  config = tmc.get_config(f"method={METHOD},bits={BITS}")
  with config.unlocked():
    config.data.path = path
    config.seeds, config.levels, config.epochs = tuple(range(runs)), (LEVEL,), 1
  timed = {}

  def clock(name, fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    timed[f"{name}_s"] = time.perf_counter() - start
    return out

  dataset = clock("load", data_lib.load, data_lib.spec_from_fields(config.data.to_dict()))
  loaded = resident_bytes()["now"]
  run = clock("make_run", specs.make_run, config, dataset)
  program = grid_lib.grid_program(run, config.base_seed, runs=runs)
  carry = clock("init", grid_lib.initial_state, program,
                specs.build_grid(config, METHOD))
  epoch = jnp.int32(0)
  step = clock("compile", lambda: program.epoch_step.lower(program.arrays, carry,
                                                             epoch).compile())
  carry, terms = clock("epoch", step, program.arrays, carry, epoch)
  encode = clock("encode_compile",
                 lambda: program.encode.lower(program.arrays, carry.train).compile())
  codes = clock("encode", lambda: sharding.to_host(encode(program.arrays, carry.train)))
  np.savez(codes_path, query_codes=codes["query_codes"][0], db_codes=codes["db_codes"][0],
           query_labels=dataset.test.labels,  # the database: train then validation
           db_labels=np.concatenate([dataset.train.labels, dataset.validation.labels]))
  loss = np.asarray(sharding.to_host(terms)["loss"])[:runs]
  return dict(timed, ms_per_run_step=1e3 * timed["epoch_s"] / (run.steps_per_epoch * runs),
              database_items=len(dataset.train) + len(dataset.validation),
              queries=len(dataset.test), devices=int(program.mesh.devices.size),
              backend=jax.default_backend(), loaded_rss_bytes=loaded,
              peak_rss_bytes=resident_bytes()["peak"], mean_loss=float(np.mean(loss)))


def evaluate_saved(codes_path: str, cpu_devices: int) -> dict:
  """In this (fresh) process: metrics.evaluate (K = 100) of saved codes.

  Returns the first call's seconds (compile included), a second call's, the
  peak resident bytes above those held before the first call (codes loaded,
  jax started), and p@100 and map@100 (chance: about 1 / CLASSES)."""
  from hashvae.core import sharding

  sharding.split_cpu(cpu_devices)
  import jax.numpy as jnp

  from hashvae.retrieval import metrics

  jnp.zeros(1).block_until_ready()  # starts jax's backend: not evaluate's memory
  with np.load(codes_path) as saved:
    args = [saved[k] for k in ("query_codes", "db_codes", "query_labels", "db_labels")]
  with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
    f.write("5")  # the peak (VmHWM) restarts from the resident memory now
  before = resident_bytes()["now"]
  start = time.perf_counter()
  scores = metrics.evaluate(*args, ks=(K,))
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  metrics.evaluate(*args, ks=(K,))
  return dict(evaluate_first_s=first_s, evaluate_s=time.perf_counter() - start,
              evaluate_peak_above_bytes=resident_bytes()["peak"] - before,
              **{name: scores[name] for name in (f"p@{K}", f"map@{K}")})


class ChildFailed(RuntimeError):
  pass


def in_child(*args) -> dict:
  """The JSON line a fresh `python -m hashvae.benchmarks.scale ARGS` prints."""
  done = subprocess.run([sys.executable, "-m", MODULE, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True)
  if done.returncode != 0:  # a negative status is the signal (-9: killed, e.g. memory)
    lines = done.stderr.strip().splitlines() or ["no message"]
    raise ChildFailed(f"{args[0]}: exit status {done.returncode}: {lines[-1][:300]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def check_sizes(sizes) -> list[int]:
  """Training sizes (ints or their text) -> ascending ints, or ValueError."""
  try:
    checked = sorted(int(n) for n in sizes)
  except ValueError:
    raise ValueError(f"scale_sizes must be whole numbers of training documents, got "
                     f"{list(sizes)}") from None
  if not checked or checked[0] < SMALLEST:
    raise ValueError(f"scale_sizes must be training sizes of at least {SMALLEST} "
                     f"(a tenth of them are the queries, K = {K}), got {checked}")
  return checked


def run(sizes=TRAIN_SIZES, cache_dir: str = CACHE, runs: int = RUNS, seed: int = 0,
        cpu_devices: int = 0):
  """Yields a "scale" figure per training size, smallest first, then one
  "scale_growth" figure. A size whose child fails (e.g. killed for memory)
  yields its reason and ends the section: a larger one would fail too."""
  sizes = check_sizes(sizes)
  if runs < 1:
    raise ValueError(f"scale_runs must be at least 1, got {runs}")
  measured = []
  with tempfile.TemporaryDirectory(prefix="hashvae_scale_") as tmp:
    for n in sizes:
      path, facts = cached_corpus(cache_dir, n, seed)
      codes = os.path.join(tmp, f"codes_{n}.npz")
      figure = dict(figure="scale", train_items=n, runs=runs, corpus=path, **facts)
      try:
        figure.update(in_child("measure", path, runs, cpu_devices, codes))
        figure.update(in_child("evaluate", codes, cpu_devices))
      except ChildFailed as e:
        yield dict(figure, failed=str(e), larger_sizes="not measured")
        break
      os.remove(codes)
      measured.append(figure)
      yield figure
  yield dict(figure="scale_growth", train_items=[f["train_items"] for f in measured],
             exponents={name: growth_exponent([f["train_items"] for f in measured],
                                              [f[name] for f in measured])
                        for name in GROWING})


def main(argv):
  usage = (f"usage: python -m {MODULE} measure MAT RUNS CPU_DEVICES CODES.npz\n"
           f"       python -m {MODULE} evaluate CODES.npz CPU_DEVICES")
  if argv[:1] == ["measure"] and len(argv) == 5:
    print(json.dumps(measure(argv[1], int(argv[2]), int(argv[3]), argv[4])), flush=True)
  elif argv[:1] == ["evaluate"] and len(argv) == 3:
    print(json.dumps(evaluate_saved(argv[1], int(argv[2]))), flush=True)
  else:
    sys.exit(usage)


if __name__ == "__main__":
  main(sys.argv[1:])
