"""Hamming ranking by counting: the machinery under metrics.py.

The database is ranked for each query by Hamming distance, ties broken by
database index (a stable, deterministic order). A distance takes one of
bits + 1 values, so the ranking needs no sort: an item's rank is the number
of items at smaller distances plus its place, in index order, among the items
at its own distance. Two passes along the database give it for a chunk of
queries at once: the first counts the items (and the relevant ones) at each
distance (`count_pass`), the second keeps running counts per distance,
started from the counts at smaller distances, and reads each item's rank
from them (`ranked_pass`). Codes are packed into uint32 words and compared
by XOR and popcount.

Queries are processed in chunks under `lax.map` (`map_chunks`); a chunk
holds a count table of [bits + 1, chunk] cells, never a [chunk, items]
array, so memory is bounded whatever the number of queries and items. The
queries are split evenly over the local devices, as one program over all of
them (`over_devices`; one device runs its chunks one after another, on one
core of a CPU; split into one device per core, every core works).
"""

from __future__ import annotations

import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hashvae.core import sharding

log = logging.getLogger(__name__)

# An evaluation of more query-item pairs than this runs in PROGRESS_BATCHES
# program calls, and logs its progress after each.
PROGRESS_PAIRS = 2 * 10**10
PROGRESS_BATCHES = 20

# Upper bound on the bytes a chunk keeps per query and count cell (or
# accumulator), used to size chunks.
BYTES_PER_CELL = 8
# A count cell packs (items, relevant items) as items + 2^16 * relevant into
# one uint32, one scatter per database item instead of two (~1.5x faster),
# when both fit in 16 bits; larger databases keep two int32 tables.
_FIELD_BITS = 16
# A chunk's count table stays within 2^17 cells (512 KiB of uint32): larger
# ones leave the core's fast caches and the per-item scatters slow down
# (64-bit codes, 2,280 queries: one chunk ~1.25x slower than two, on a 2-core
# AMD EPYC). This also keeps cell indices well inside int32.
_MAX_CELLS = 2**17


def pack_codes(codes):
  """[items, bits] in {0, 1} -> [items, ceil(bits / 32)] uint32.

  Bit j of word w holds code bit 32 w + j; the padding bits are 0, so they
  never add to a distance. (jax without x64 has no uint64.)
  """
  items, bits = codes.shape
  words = -(-bits // 32)
  padded = jnp.pad(jnp.asarray(codes, jnp.uint32), ((0, 0), (0, 32 * words - bits)))
  shifted = padded.reshape(items, words, 32) << jnp.arange(32, dtype=jnp.uint32)
  return jnp.sum(shifted, axis=-1, dtype=jnp.uint32)  # disjoint bits: sum = or


def hamming_distances(query_words, db_words):
  """[queries, words] x [items, words] packed codes -> [queries, items] int32."""
  differ = lax.population_count(query_words[:, None, :] ^ db_words[None, :, :])
  return jnp.sum(differ, axis=-1, dtype=jnp.int32)


def relevance(query_labels, db_labels):
  """[queries, items] bool: same label, or at least one shared label."""
  if query_labels.ndim == 1:
    return query_labels[:, None] == db_labels[None, :]
  shared = query_labels.astype(jnp.float32) @ db_labels.astype(jnp.float32).T
  return shared > 0


def empty_table(cells: int, wide: bool):
  """Count cells, packed (uint32 [cells]) or wide (two int32 [cells])."""
  if wide:
    return (jnp.zeros(cells, jnp.int32), jnp.zeros(cells, jnp.int32))
  return jnp.zeros(cells, jnp.uint32)


def add_counts(table, cell, relevant):
  """Counts one item per query into `cell` [chunk] (distinct cells)."""
  if isinstance(table, tuple):
    items, rel = table
    return (items.at[cell].add(1, unique_indices=True),
            rel.at[cell].add(relevant.astype(jnp.int32), unique_indices=True))
  step = jnp.where(relevant, (1 << _FIELD_BITS) + 1, 1).astype(jnp.uint32)
  return table.at[cell].add(step, unique_indices=True)


def split_counts(values):
  """Table values -> (items, relevant items), int32 of the same shape."""
  if isinstance(values, tuple):
    return values
  low = values & ((1 << _FIELD_BITS) - 1)
  return low.astype(jnp.int32), (values >> _FIELD_BITS).astype(jnp.int32)


def scan_database(query_words, query_labels, db_words, db_labels, table, fold, acc):
  """One pass along the database in index order, counting items per distance.

  table: cell d * chunk + q counts the items seen at distance d from query q.
  fold(acc, index, count, count_relevant, relevant) -> acc is called for each
    database item with [chunk] arrays: the count in the item's cell after
    adding it (its rank, when the table starts from the counts at smaller
    distances), the same among relevant items, and its relevance.
  db_labels None: nothing is relevant. Returns the final (table, acc).
  """
  chunk = query_words.shape[0]
  lanes = jnp.arange(chunk)

  # One item per step: its cells differ across queries, which keeps the
  # scatter and gather on XLA:CPU's fast path. Blocks of items (cells may
  # repeat) measured 3-7x slower, a sort per query ~20x, on Snippets sizes.
  def step(carry, item):
    table, acc = carry
    index, words, labels = item
    cell = hamming_distances(query_words, words[None])[:, 0] * chunk + lanes
    if labels is None:
      relevant = jnp.zeros(chunk, bool)
    else:
      relevant = relevance(query_labels, labels[None])[:, 0]
    table = add_counts(table, cell, relevant)
    count = jax.tree.map(lambda t: t.at[cell].get(unique_indices=True), table)
    return (table, fold(acc, index, *split_counts(count), relevant)), None

  items = jnp.arange(db_words.shape[0])
  return lax.scan(step, (table, acc), (items, db_words, db_labels))[0]


def count_pass(query_words, query_labels, db_words, db_labels, bits):
  """The count table (`empty_table`) shaped [bits + 1, chunk]: cell (d, q)
  counts the database items, and the relevant ones, at distance d from
  query q (read them with `_split`)."""
  chunk = query_words.shape[0]
  # A packed field counts at most every database item.
  wide = db_words.shape[0] >= 1 << _FIELD_BITS
  empty = empty_table((bits + 1) * chunk, wide)
  counts, _ = scan_database(query_words, query_labels, db_words, db_labels, empty,
                             lambda acc, *_: acc, ())
  return jax.tree.map(lambda t: t.reshape(bits + 1, chunk), counts)


def join_counts(items, relevant, database_size: int):
  """(items, relevant items) int32 [bits + 1, chunk] -> the count table
  that `count_pass` would have built for them."""
  if database_size >= 1 << _FIELD_BITS:
    return items, relevant
  return (items.astype(jnp.uint32)
          + (relevant.astype(jnp.uint32) << _FIELD_BITS))


def ranked_pass(query_words, query_labels, db_words, db_labels, bits, fold, acc,
                counts=None):
  """Calls `fold` (see `scan_database`) with every database item's rank.

  counts: the (items, relevant items) [bits + 1, chunk] int32 counts per
  distance when already known (hypercube.distance_counts), which saves the
  counting pass. Returns (those counts, the final acc).
  """
  if counts is None:
    counts = count_pass(query_words, query_labels, db_words, db_labels, bits)
  else:
    counts = join_counts(*counts, db_words.shape[0])
  # Ranks at distance d start after every item at a smaller distance.
  start = jax.tree.map(lambda t: (jnp.cumsum(t, 0) - t).reshape(-1), counts)
  _, acc = scan_database(query_words, query_labels, db_words, db_labels, start, fold, acc)
  return split_counts(counts), acc


def map_chunks(fn, chunk: int, *query_arrays):
  """fn over chunks of the queries under lax.map: outputs [queries, ...]."""
  q = query_arrays[0].shape[0]
  padded = -(-q // chunk) * chunk

  def split(a):
    a = jnp.pad(a, [(0, padded - q)] + [(0, 0)] * (a.ndim - 1))
    return a.reshape((padded // chunk, chunk) + a.shape[1:])

  out = lax.map(lambda args: fn(*args), tuple(split(a) for a in query_arrays))
  return jax.tree.map(lambda v: v.reshape((padded,) + v.shape[2:])[:q], out)


def chunk_size(queries: int, bits: int, accumulators: int, budget: int) -> int:
  """Queries per chunk: each keeps bits + 1 count cells and accumulators."""
  per_query = BYTES_PER_CELL * (bits + 1 + accumulators + 4)
  return int(max(1, min(queries, budget // per_query, _MAX_CELLS // (bits + 1))))


QUERY_SPLIT = jax.sharding.PartitionSpec("queries")


@functools.lru_cache(maxsize=None)
def split_program(body, static: tuple, queries_args: int, db_args: int,
                   devices: tuple):
  """jit(body(..., **dict(static))) with its first `queries_args` arguments
  (the queries) split evenly over `devices` and the other `db_args` (the
  database) copied to each: one program that runs on every device at once.
  Cached, so each (body, static arguments, devices) compiles once per shape."""
  mesh = jax.sharding.Mesh(np.array(devices), ("queries",))
  split, copied = QUERY_SPLIT, jax.sharding.PartitionSpec()
  return mesh, jax.jit(jax.shard_map(
      functools.partial(body, **dict(static)), mesh=mesh,
      in_specs=(split,) * queries_args + (copied,) * db_args,
      out_specs=split, check_vma=False))  # the chunk loop's carry is per device


def queries_per_device(query_codes) -> int:
  return -(-query_codes.shape[0] // jax.local_device_count())


def over_devices(body, static: dict, query_arrays, db_arrays):
  """body(*query_arrays, *db_arrays, **static) with the queries split over
  the local devices (padded to a multiple of their count with copies of the
  last query, whose outputs are dropped). Outputs [queries, ...], on the host."""
  q = len(query_arrays[0])
  mesh, program = split_program(body, tuple(sorted(static.items())),
                                 len(query_arrays), len(db_arrays),
                                 tuple(jax.local_devices()))
  padded = sharding.padded_size(q, mesh)
  split = jax.sharding.NamedSharding(mesh, QUERY_SPLIT)
  queries = [jax.device_put(sharding.pad_runs(a, padded), split) for a in query_arrays]
  database = [jax.device_put(a, sharding.replicated(mesh)) for a in db_arrays]
  return jax.tree.map(lambda v: np.asarray(v)[:q], program(*queries, *database))


def progress_batch(queries: int, items: int) -> int:
  """Queries per program call: all of them, or for a long evaluation
  (over PROGRESS_PAIRS pairs) a PROGRESS_BATCHES-th, so that it can report
  its progress between calls."""
  if queries * items <= PROGRESS_PAIRS:
    return max(queries, 1)
  return -(-queries // PROGRESS_BATCHES)


def in_batches(body, static: dict, query_arrays, db_arrays, batch: int):
  """over_devices over the queries `batch` at a time (each call padded to
  `batch` with copies of the last query, so one program serves all),
  logging progress and an ETA after each call when there are several."""
  queries = len(query_arrays[0])
  if batch >= queries:
    return over_devices(body, static, query_arrays, db_arrays)
  parts, start = [], time.perf_counter()
  for first in range(0, queries, batch):
    real = min(batch, queries - first)
    part = [np.concatenate([a[first:first + real]] + [a[first + real - 1:first + real]]
                           * (batch - real)) for a in query_arrays]
    parts.append(jax.tree.map(lambda v, real=real: v[:real],
                              over_devices(body, static, part, db_arrays)))
    done, elapsed = first + real, time.perf_counter() - start
    log.info("evaluate: %d/%d distinct queries against %d items, elapsed %.0fs, "
             "ETA %.0fs", done, queries, len(db_arrays[0]), elapsed,
             elapsed / done * (queries - done))
  return jax.tree.map(lambda *v: np.concatenate(v), *parts)


def check_codes(query_codes, db_codes):
  if query_codes.ndim != 2 or db_codes.ndim != 2 or (
      query_codes.shape[1] != db_codes.shape[1]):
    raise ValueError(f"codes must be [queries, bits] and [items, bits] with the "
                     f"same bits, got {query_codes.shape} and {db_codes.shape}")


