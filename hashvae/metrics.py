"""Hamming-ranking retrieval metrics (METHOD.md section 5), vectorised.

The database is ranked for each query by Hamming distance, ties broken by
database index (a stable, deterministic order). Queries are processed in
fixed-size chunks under `lax.map`, so memory is bounded by
chunk x database, whatever the number of queries.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Per (query, database item) the chunk holds a few int32 / float32 arrays.
BYTES_PER_PAIR = 24


def hamming_distances(query_codes, db_codes):
  """[queries, bits] x [items, bits] {0,1} -> [queries, items] int32."""
  q = query_codes.astype(jnp.float32)
  d = db_codes.astype(jnp.float32)
  bits = q.shape[-1]
  agree = q @ d.T + (1.0 - q) @ (1.0 - d).T  # exact: integers below 2^24
  return (bits - agree).astype(jnp.int32)


def relevance(query_labels, db_labels):
  """[queries, items] bool: same label, or at least one shared label."""
  if query_labels.ndim == 1:
    return query_labels[:, None] == db_labels[None, :]
  shared = query_labels.astype(jnp.float32) @ db_labels.astype(jnp.float32).T
  return shared > 0


def _chunk_metrics(query_codes, db_codes, query_labels, db_labels,
                   ks: tuple[int, ...]):
  """Per-query metrics for one chunk: dict of [chunk] float32."""
  n = db_codes.shape[0]
  bits = db_codes.shape[1]
  dist = hamming_distances(query_codes, db_codes)
  rel = relevance(query_labels, db_labels)
  # Keys are unique, so sorting them is the stable (distance, index) order.
  sorted_keys = jnp.sort(dist * n + jnp.arange(n, dtype=jnp.int32), axis=1)
  order = sorted_keys % n
  sorted_dist = sorted_keys // n
  hits = jnp.cumsum(jnp.take_along_axis(rel, order, axis=1), axis=1,
                    dtype=jnp.int32)  # [chunk, n] relevant among the first i+1
  rel_sorted = jnp.diff(hits, axis=1, prepend=0)
  total_rel = hits[:, -1]
  ranks = jnp.arange(1, n + 1, dtype=jnp.float32)
  precision_at_rank = hits / ranks
  # Items strictly closer than distance d, for d = 0 .. bits + 1.
  below = jax.vmap(lambda s: jnp.searchsorted(
      s, jnp.arange(bits + 2), side="left"))(sorted_dist)
  hits_below = lambda count: jnp.where(
      count > 0, jnp.take_along_axis(hits, jnp.maximum(count - 1, 0), 1), 0)
  out = {}
  for k in ks:
    hits_k = hits[:, k - 1].astype(jnp.float32)
    out[f"p@{k}"] = hits_k / k
    out[f"r@{k}"] = hits_k / jnp.maximum(total_rel, 1)
    ap_sum = jnp.sum((rel_sorted * precision_at_rank)[:, :k], axis=1)
    out[f"map@{k}"] = ap_sum / jnp.maximum(hits_k, 1.0)
    # Tie-aware: the distance at rank k is shared by a group of items; all
    # items closer are retrieved, and the remaining slots take a uniformly
    # random subset of the group, whose expected relevant count is
    # slots * (relevant in group) / (group size).
    d_k = sorted_dist[:, k - 1:k]
    n_lt = jnp.take_along_axis(below, d_k, 1)
    n_le = jnp.take_along_axis(below, d_k + 1, 1)
    r_lt, r_le = hits_below(n_lt), hits_below(n_le)
    slots = (k - n_lt).astype(jnp.float32)
    expected = r_lt + slots * (r_le - r_lt) / (n_le - n_lt)
    out[f"p@{k}_tie_aware"] = expected[:, 0] / k
  return out


@functools.partial(jax.jit, static_argnames=("ks", "chunk"))
def _evaluate(query_codes, db_codes, query_labels, db_labels, ks, chunk):
  q = query_codes.shape[0]
  padded = -(-q // chunk) * chunk
  pad = lambda a: jnp.pad(a, [(0, padded - q)] + [(0, 0)] * (a.ndim - 1))
  per_chunk = jax.lax.map(
      lambda args: _chunk_metrics(args[0], db_codes, args[1], db_labels, ks),
      (pad(query_codes).reshape(padded // chunk, chunk, -1),
       pad(query_labels).reshape((padded // chunk, chunk) + query_labels.shape[1:])))
  return {name: jnp.mean(v.reshape(-1)[:q]) for name, v in per_chunk.items()}


def evaluate(query_codes, db_codes, query_labels, db_labels,
             ks: Sequence[int] = (100, 1000, 5000),
             memory_budget_bytes: int = 256 * 2**20) -> dict[str, float]:
  """Retrieval metrics of `query_codes` against `db_codes`.

  Args:
    query_codes: [queries, bits] in {0, 1}.
    db_codes: [items, bits] in {0, 1}.
    query_labels, db_labels: [queries] / [items] ints, or multi-hot
      [queries, classes] / [items, classes].
    ks: cut-offs, each at most the database size.
    memory_budget_bytes: bounds the per-chunk working set.
  Returns:
    {"p@K", "r@K", "map@K", "p@K_tie_aware"} for each K, floats averaged
    over queries. map@K averages precision@i over the ranks i <= K holding a
    relevant item (0 when there is none); r@K divides by the relevant items
    in the whole database.
  """
  query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
  query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
  if query_codes.ndim != 2 or db_codes.ndim != 2 or (
      query_codes.shape[1] != db_codes.shape[1]):
    raise ValueError(f"codes must be [queries, bits] and [items, bits] with the "
                     f"same bits, got {query_codes.shape} and {db_codes.shape}")
  if query_labels.shape[0] != query_codes.shape[0] or (
      db_labels.shape[0] != db_codes.shape[0]):
    raise ValueError("one label (row) per code is needed: got "
                     f"{query_labels.shape} labels for {query_codes.shape[0]} "
                     f"queries and {db_labels.shape} for {db_codes.shape[0]} items")
  if query_labels.ndim != db_labels.ndim:
    raise ValueError("query and database labels must both be vectors or both "
                     "multi-hot matrices")
  n = db_codes.shape[0]
  ks = tuple(int(k) for k in ks)
  if any(not 1 <= k <= n for k in ks):
    raise ValueError(f"every K must lie in [1, {n}] (the database size), got {ks}")
  if n * (query_codes.shape[1] + 2) >= 2**31:
    raise ValueError(f"database of {n} items is too large for int32 ranking keys")
  chunk = int(max(1, min(query_codes.shape[0],
                         memory_budget_bytes // (BYTES_PER_PAIR * n))))
  result = _evaluate(jnp.asarray(query_codes, jnp.uint8),
                     jnp.asarray(db_codes, jnp.uint8),
                     jnp.asarray(query_labels), jnp.asarray(db_labels), ks, chunk)
  names = [f"{m}@{k}" for k in ks for m in ("p", "r", "map")]
  names += [f"p@{k}_tie_aware" for k in ks]
  return {name: float(result[name]) for name in names}
