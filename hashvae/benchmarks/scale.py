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
import scipy.io
import scipy.sparse

from hashvae.benchmarks.peak_rss import resident_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "hashvae.benchmarks.scale"

TRAIN_SIZES = (100_000, 200_000, 400_000, 800_000)
QUICK_SIZES = (2_000, 4_000)
SMALLEST = 1_000  # queries = a tenth, at least K of them
CACHE = "/tmp/hashvae_scale"
RUNS = 5  # one chunk, as grid.train runs cpu_runs_per_chunk = 5 on a CPU device
METHOD, BITS, LEVEL, K = "ssb_vae", 16, 0.1, 100

# The corpus: RCV1 as VDSH ships it (10,000 terms) with 20 single-label
# classes. A token is a background term (Zipf over the vocabulary: a few
# terms in most documents, most terms rare) or, with TOPIC_SHARE, a term of
# its class's topic (TOPIC_TERMS terms drawn from the vocabulary, themselves
# Zipf-weighted), which is what makes the classes learnable.
CLASSES, TERMS, NONZEROS = 20, 10_000, 60
ZIPF = 1.0
TOPIC_TERMS, TOPIC_SHARE = 100, 0.25
BLOCK = 50_000  # documents drawn at once: bounds the generator's working set
GENERATOR = 1  # part of the cache file's name: change it when a seed's corpus changes
SPLITS = (("train", 1), ("cv", 10), ("test", 10))  # name, training documents per one

# The measures whose growth is fitted (bytes and seconds).
GROWING = ("load_s", "loaded_rss_bytes", "make_run_s", "init_s", "compile_s", "epoch_s",
           "ms_per_run_step", "encode_compile_s", "encode_s", "peak_rss_bytes",
           "evaluate_first_s", "evaluate_s", "evaluate_peak_above_bytes")


# --- the corpus --------------------------------------------------------------


def zipf_cdf(n: int, exponent: float) -> np.ndarray:
  """[n] cumulative probabilities of ranks 1..n with weight rank**-exponent."""
  weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
  return np.cumsum(weights) / weights.sum()


def _draw(rng, cdf: np.ndarray, size: int) -> np.ndarray:
  """[size] indices into `cdf`'s categories (inverse transform)."""
  # The clip guards against cdf[-1] rounding a hair below 1.
  return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _unique_sorted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(the distinct values of `keys` ascending, how often each occurs).

  A sort and a comparison of neighbours: for these int64 keys faster than
  np.unique, which hashes them first (numpy 2)."""
  keys = np.sort(keys)
  first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
  return keys[first], np.diff(np.append(first, len(keys)))


def _term_counts(rng, labels: np.ndarray, widths: np.ndarray, topics: np.ndarray,
                 background: np.ndarray, topic_cdf: np.ndarray) -> scipy.sparse.csr_matrix:
  """[docs, terms] CSR term counts, document i with exactly widths[i] distinct
  terms of its class labels[i].

  Tokens are drawn with replacement until every document has its width in
  distinct terms (a repeat adds to a term's count): each round draws only
  the documents' shortfall, so the rounds shrink fast. Every set is a sorted
  array of keys doc * TERMS + term, never a dense [docs, terms] array."""
  docs = len(labels)
  seen = np.empty(0, np.int64)  # sorted distinct keys so far
  distinct = np.zeros(docs, np.int64)
  drawn = []
  while (short := widths - distinct).any():
    rows = np.repeat(np.arange(docs, dtype=np.int64), short)
    terms = _draw(rng, background, len(rows))
    from_topic = rng.random(len(rows)) < TOPIC_SHARE
    topic_terms = topics[labels[rows], _draw(rng, topic_cdf, len(rows))]
    keys = rows * TERMS + np.where(from_topic, topic_terms, terms)
    drawn.append(keys)
    fresh, _ = _unique_sorted(keys)
    at = np.searchsorted(seen, fresh)
    known = np.zeros(len(fresh), bool)
    inside = at < len(seen)
    known[inside] = seen[at[inside]] == fresh[inside]
    # Inserting sorted keys at their sorted places keeps `seen` sorted in
    # one linear pass, where a union would sort everything again.
    seen = np.insert(seen, at[~known], fresh[~known])
    distinct += np.bincount(fresh[~known] // TERMS, minlength=docs)
  keys, counts = _unique_sorted(np.concatenate(drawn))
  indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // TERMS, minlength=docs))])
  return scipy.sparse.csr_matrix((counts.astype(np.float64), keys % TERMS, indptr),
                                 shape=(docs, TERMS))


def _documents(rng, docs: int, topics, background, topic_cdf):
  """(CSR term counts [docs, TERMS], labels [docs] int) in blocks of BLOCK."""
  parts, labels = [], []
  for first in range(0, docs, BLOCK):
    n = min(BLOCK, docs - first)
    block_labels = rng.integers(0, CLASSES, n)
    widths = np.maximum(rng.poisson(NONZEROS, n), 1)  # Poisson: no row far wider
    parts.append(_term_counts(rng, block_labels, widths, topics, background, topic_cdf))
    labels.append(block_labels)
  return scipy.sparse.vstack(parts, format="csr"), np.concatenate(labels)


def rcv1_like(train_items: int, seed: int = 0) -> dict:
  """A seeded RCV1-shaped corpus in the VDSH .mat layout.

  Returns {"train", "cv", "test": scipy.sparse CSR [items, TERMS] float64
  tf-idf (term count x smoothed idf of the training split, all > 0), and
  "gnd_train", "gnd_cv", "gnd_test": [items, CLASSES] uint8 one-hot}, with
  train_items, train_items // 10 and train_items // 10 items."""
  topic_rng, *split_rngs = [np.random.default_rng(s)
                            for s in np.random.SeedSequence(seed).spawn(1 + len(SPLITS))]
  # Each class's topic: TOPIC_TERMS distinct terms (a random key per term,
  # the smallest keys win); classes may share a few.
  topics = np.argsort(topic_rng.random((CLASSES, TERMS)), axis=1)[:, :TOPIC_TERMS]
  background, topic_cdf = zipf_cdf(TERMS, ZIPF), zipf_cdf(TOPIC_TERMS, ZIPF)
  mat, idf = {}, None
  for (name, per), rng in zip(SPLITS, split_rngs, strict=True):
    counts, labels = _documents(rng, train_items // per, topics, background, topic_cdf)
    if idf is None:  # the training split's: held-out documents are weighted as unseen
      df = np.bincount(counts.indices, minlength=TERMS)
      idf = np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0
    counts.data *= idf[counts.indices]
    mat[name] = counts
    mat[f"gnd_{name}"] = np.eye(CLASSES, dtype=np.uint8)[labels]
  return mat


def corpus_path(cache_dir: str, train_items: int, seed: int) -> str:
  """The cache file of (train_items, seed) under this generator's parameters."""
  name = (f"rcv1_like_g{GENERATOR}_n{train_items}_s{seed}_c{CLASSES}_t{TERMS}"
          f"_w{NONZEROS}_k{TOPIC_TERMS}_p{TOPIC_SHARE}_z{ZIPF}")
  return os.path.join(cache_dir, name + ".mat")


def cached_corpus(cache_dir: str, train_items: int, seed: int = 0) -> tuple[str, dict]:
  """(path, facts) of the corpus, generated and saved unless already cached.

  facts: generate_s (when it was generated), nonzeros per split, and
  whether this call reused the file. The .mat is written under a temporary
  name and renamed, and the facts (.json) after it, so an interrupted write
  is never taken for a finished one."""
  path = corpus_path(cache_dir, train_items, seed)
  facts_path = path[:-len(".mat")] + ".json"
  if os.path.isfile(path) and os.path.isfile(facts_path):
    with open(facts_path, encoding="utf-8") as f:
      return path, dict(json.load(f), cached=True)
  os.makedirs(cache_dir, exist_ok=True)
  start = time.perf_counter()
  mat = rcv1_like(train_items, seed)
  generate_s = time.perf_counter() - start
  with open(path + ".partial", "wb") as f:
    scipy.io.savemat(f, mat, do_compression=False)
  os.replace(path + ".partial", path)
  facts = dict(generate_s=generate_s,
               **{f"{name}_nonzeros": int(mat[name].nnz) for name, _ in SPLITS})
  with open(facts_path + ".partial", "w", encoding="utf-8") as f:
    json.dump(facts, f)
  os.replace(facts_path + ".partial", facts_path)
  return path, dict(facts, cached=False)


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
  from hashvae.training import grid as grid_lib
  from hashvae.training import train

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

  dataset = clock("load", data_lib.load, config.data)
  loaded = resident_bytes()["now"]
  run = clock("make_run", train.make_run, config, dataset)
  program = grid_lib.grid_program(run, config.base_seed, runs=runs)
  carry = clock("init", grid_lib.initial_state, program,
                grid_lib.build_grid(config, METHOD))
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
