"""Hamming-ranking retrieval metrics (METHOD.md section 5), by counting.

hamming.py ranks the database for each query by Hamming distance, ties
broken by database index, in two counting passes; the metrics here fold
each database item's rank into running sums (p@K, r@K, map@K, ndcg@K,
map@all, tie-aware p@K) or read the histogram of distances alone (p@r2, the
precision-recall curve over the radius of `radius_curve`), which needs no
ranking, so no tie rule enters it. `nearest` returns the head of the same
ranking that `evaluate` scores.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from hashvae.retrieval import hypercube, min_tree, rerank
from hashvae.retrieval.hamming import (
  check_codes,
  chunk_size,
  count_pass,
  in_batches,
  map_chunks,
  over_devices,
  pack_codes,
  progress_batch,
  queries_per_device,
  ranked_pass,
  split_counts,
)

# The Hamming radius of p@r2, the classical hash-lookup protocol.
RADIUS = 2


def _expected_hits(items, relevant, k: int):
  """Relevant among the first k averaged over all orders of ties: [chunk].

  items, relevant: [distances, chunk] counts. Every item closer than the
  distance at rank k is retrieved; the remaining slots take a uniformly
  random subset of the group at that distance, whose expected relevant count
  is slots * (relevant in group) / (group size).
  """
  up_to = jnp.cumsum(items, 0)
  group = jnp.sum(up_to < k, 0)[None]  # the distance holding rank k
  at = lambda a: jnp.take_along_axis(a, group, 0)[0]
  size, relevant_in = at(items), at(relevant)
  closer = at(up_to) - size
  relevant_closer = at(jnp.cumsum(relevant, 0)) - relevant_in
  slots = (k - closer).astype(jnp.float32)
  return relevant_closer + slots * relevant_in / size


def _gains(k: int) -> np.ndarray:
  """[k + 2] float64 DCG gains by rank: 1 / log2(r + 1) at r = 1..k, 0 at
  r = 0 and at r = k + 1, which stands for every rank beyond k."""
  gains = np.zeros(k + 2)
  gains[1:k + 1] = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
  return gains


def _chunk_metrics(query_words, query_labels, db_words, db_labels, bits: int,
                   ks: tuple[int, ...], counts=None):
  """Per-query metrics for one chunk: dict of [chunk] float32. counts: the
  chunk's (items, relevant) [bits + 1, chunk] per distance, when known."""
  n, chunk = len(ks), query_words.shape[0]
  # Two accumulators, so that the update is two fused loops per database
  # item (each loop of the scan body costs about as much as its arithmetic):
  # [2 n, chunk]: the relevant items within each cut-off (float32 counts,
  # exact below 2^24), then the sum of their DCG gains; [n + 1, chunk]: the
  # sum of their precisions, then the same over the whole ranking (map@all).
  counted_cutoffs = jnp.asarray(ks + ks)[:, None]
  count_row = (jnp.arange(2 * n) < n)[:, None]
  precision_cutoffs = jnp.asarray(ks + (db_words.shape[0],))[:, None]
  # Each rank's gain is read from a table: XLA:CPU computes log one element
  # at a time, slower than the read.
  gains = _gains(max(ks))
  table = jnp.asarray(gains, jnp.float32)

  def fold(acc, index, rank, hits, relevant):
    counted, precision_sum = acc
    values = jnp.where(count_row, 1.0, jnp.take(table, rank, mode="clip"))
    precision = jnp.where(relevant, hits / rank, 0.0)
    return (counted + jnp.where(relevant & (rank <= counted_cutoffs), values, 0.0),
            precision_sum + jnp.where(rank <= precision_cutoffs, precision, 0.0))

  (items, relevant), (counted, precision_sum) = ranked_pass(
      query_words, query_labels, db_words, db_labels, bits, fold,
      (jnp.zeros((2 * n, chunk)), jnp.zeros((n + 1, chunk))), counts)
  retrieved, gain_sum = counted[:n], counted[n:]
  total_relevant = jnp.sum(relevant, 0)
  # [max(ks) + 2]: the ideal DCG, of m hits at ranks 1..m.
  ideal = jnp.asarray(np.cumsum(gains), jnp.float32)
  out = {}
  for i, k in enumerate(ks):
    hits_k = retrieved[i]
    out[f"p@{k}"] = hits_k / k
    out[f"r@{k}"] = hits_k / jnp.maximum(total_relevant, 1)
    out[f"map@{k}"] = precision_sum[i] / jnp.maximum(hits_k, 1.0)
    out[f"p@{k}_tie_aware"] = _expected_hits(items, relevant, k) / k
    best = ideal[jnp.minimum(total_relevant, k)]  # 0 when nothing is relevant
    out[f"ndcg@{k}"] = gain_sum[i] / jnp.where(best > 0, best, 1.0)
  out["map@all"] = precision_sum[n] / jnp.maximum(total_relevant, 1)
  ball = jnp.sum(items[:RADIUS + 1], 0)
  out[f"p@r{RADIUS}"] = jnp.sum(relevant[:RADIUS + 1], 0) / jnp.maximum(ball, 1)
  out[f"p@r{RADIUS}_empty"] = (ball == 0).astype(jnp.float32)
  return out


def _chunk_nearest(query_words, db_words, bits: int, k: int):
  """[chunk, k] int32 indices of the k first items in the ranking."""
  chunk = query_words.shape[0]
  lanes = jnp.arange(chunk)

  def fold(ids, index, rank, hits, relevant):
    # Ranks beyond k write to a spare slot per query, so slots stay distinct.
    slot = jnp.where(rank <= k, lanes * k + rank - 1, chunk * k + lanes)
    return ids.at[slot].set(index, unique_indices=True)

  _, ids = ranked_pass(query_words, None, db_words, None, bits, fold,
                        jnp.zeros(chunk * (k + 1), jnp.int32))
  return ids[:chunk * k].reshape(chunk, k)


def _per_query_metrics(query_codes, query_labels, db_codes, db_labels, *, ks, chunk):
  """{metric: [queries]} for these queries."""
  bits, db_words = db_codes.shape[1], pack_codes(db_codes)
  return map_chunks(
      lambda words, labels: _chunk_metrics(words, labels, db_words, db_labels, bits, ks),
      chunk, pack_codes(query_codes), query_labels)


def _per_query_metrics_counted(query_codes, query_labels, items, relevant, db_codes,
                               db_labels, *, ks, chunk):
  """The same, given the queries' [queries, bits + 1] counts per distance."""
  bits, db_words = db_codes.shape[1], pack_codes(db_codes)

  def chunk_metrics(words, labels, items, relevant):
    return _chunk_metrics(words, labels, db_words, db_labels, bits, ks,
                          (items.T, relevant.T))

  return map_chunks(chunk_metrics, chunk, pack_codes(query_codes), query_labels,
                    items, relevant)


def distinct_queries(query_codes, query_labels):
  """(first [distinct] row of each distinct query, inverse [queries] its
  distinct row, multiplicity [distinct]): queries with the same code and
  the same labels score the same, so each is scored once."""
  labels = np.asarray(query_labels)
  if labels.ndim == 1:
    label_bytes = labels.astype(np.int64).reshape(-1, 1).view(np.uint8)
  else:
    label_bytes = np.packbits(labels > 0, axis=1)
  key = np.concatenate([np.packbits(np.asarray(query_codes, np.uint8), axis=1),
                        label_bytes], axis=1)
  _, first, inverse, multiplicity = np.unique(
      key, axis=0, return_index=True, return_inverse=True, return_counts=True)
  return first, inverse.reshape(-1), multiplicity


def _nearest_ids(query_codes, db_codes, *, k, chunk):
  """[queries, k] database indices for these queries, by the counting pass."""
  bits, db_words = db_codes.shape[1], pack_codes(db_codes)
  return map_chunks(lambda words: _chunk_nearest(words, db_words, bits, k),
                     chunk, pack_codes(query_codes))


def _tree_nearest_ids(query_codes, db_codes, *, items, k, chunk):
  """The same by min_tree; db_codes padded to min_tree.padded_items rows."""
  db_words = pack_codes(db_codes)
  return map_chunks(lambda words: min_tree.chunk_top_k(words, db_words, items=items, k=k),
                    chunk, pack_codes(query_codes))


def _check_labels(query_codes, db_codes, query_labels, db_labels):
  if query_labels.shape[0] != query_codes.shape[0] or (
      db_labels.shape[0] != db_codes.shape[0]):
    raise ValueError("one label (row) per code is needed: got "
                     f"{query_labels.shape} labels for {query_codes.shape[0]} "
                     f"queries and {db_labels.shape} for {db_codes.shape[0]} items")
  if query_labels.ndim != db_labels.ndim:
    raise ValueError("query and database labels must both be vectors or both "
                     "multi-hot matrices")


def nearest(query_codes, db_codes, k: int,
            memory_budget_bytes: int = 256 * 2**20) -> np.ndarray:
  """Each query's k first database items: [queries, k] int32 indices.

  Items are ranked by Hamming distance, ties by database index: the order
  that `evaluate` scores. query_codes: [queries, bits] and db_codes:
  [items, bits], in {0, 1}. The search is min_tree's (one pass over the
  database, then selections among k * BLOCK keys), or the counting pass
  where the database is too large for its int32 keys.
  """
  query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
  check_codes(query_codes, db_codes)
  if not 1 <= k <= db_codes.shape[0]:
    raise ValueError(f"K must lie in [1, {db_codes.shape[0]}] (the database size), got {k}")
  if query_codes.shape[0] == 0:
    return np.zeros((0, k), np.int32)
  items, bits = db_codes.shape
  queries = (query_codes.astype(np.uint8),)
  if items > min_tree.max_items(bits):
    chunk = chunk_size(queries_per_device(query_codes), bits, k, memory_budget_bytes)
    return over_devices(_nearest_ids, dict(k=int(k), chunk=chunk), queries,
                        (db_codes.astype(np.uint8),))
  padded = np.zeros((min_tree.padded_items(items, k), bits), np.uint8)
  padded[:items] = db_codes
  chunk = min_tree.chunk_size(queries_per_device(query_codes), items, bits, k,
                              memory_budget_bytes)
  return over_devices(_tree_nearest_ids, dict(items=items, k=int(k), chunk=chunk),
                      queries, (padded,))


def evaluate(query_codes, db_codes, query_labels, db_labels,
             ks: Sequence[int] = (100, 1000, 5000),
             memory_budget_bytes: int = 256 * 2**20, *, query_scores=None,
             rankings: Sequence[str] = ()) -> dict[str, float]:
  """Retrieval metrics of `query_codes` against `db_codes`.

  Args:
    query_codes: [queries, bits] in {0, 1}.
    db_codes: [items, bits] in {0, 1}.
    query_labels, db_labels: [queries] / [items] ints, or multi-hot
      [queries, classes] / [items, classes].
    ks: cut-offs, each at most the database size.
    memory_budget_bytes: bounds the per-chunk working set.
    query_scores: [queries, bits] the queries' real-valued code scores
      (query_codes = 1[scores > 0]), needed by `rankings`.
    rankings: extra rankings that use the scores (rerank.RANKINGS), each
      adding "p@K_<ranking>" for every K; the metrics above stay those of
      the Hamming ranking.
  Returns:
    Floats averaged over queries. The ranked metrics score the ranking by
    distance with ties broken by database index (rank i counts from 1):
    - "p@K", "r@K": relevant items among the first K, over K / over the
      relevant items in the whole database (0 when there are none).
    - "map@K": the mean of precision@i over the ranks i <= K holding a
      relevant item (0 when there is none); "map@all" is the same over the
      whole ranking (K = the database size), i.e. divided by every relevant
      item in the database.
    - "ndcg@K": binary-relevance DCG@K = sum over ranks i <= K of
      rel_i / log2(i + 1), over the ideal DCG@K of min(K, relevant in the
      database) hits at the first ranks; 0 for a query with no relevant item.
    - "p@K_tie_aware": p@K averaged over every order of the tied items.
    The radius metrics score the Hamming ball, which no tie rule affects:
    - "p@r2": relevant among the items within distance 2 of the query, over
      their number; a query whose ball is empty scores 0 (the usual
      convention, which counts a failed lookup as a miss).
    - "p@r2_empty": the fraction of queries whose ball is empty.
    Sums run in float32: map@all, which sums over every relevant item, is
    good to ~2e-6 with 30,000 relevant items per query.
  """
  query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
  query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
  check_codes(query_codes, db_codes)
  _check_labels(query_codes, db_codes, query_labels, db_labels)
  n = db_codes.shape[0]
  ks = tuple(int(k) for k in ks)
  if any(not 1 <= k <= n for k in ks):
    raise ValueError(f"every K must lie in [1, {n}] (the database size), got {ks}")
  extra = rerank.reranked_precision(query_scores, query_codes, db_codes, query_labels,
                                    db_labels, ks, rankings)
  first, _, multiplicity = distinct_queries(query_codes, query_labels)
  query_codes, query_labels = query_codes[first], query_labels[first]
  bits = db_codes.shape[1]
  batch = progress_batch(len(query_codes), n)
  chunk = chunk_size(queries_per_device(query_codes[:batch]), bits, 3 * len(ks) + 1,
                     memory_budget_bytes)
  body, query_arrays = _per_query_metrics, (query_codes.astype(np.uint8), query_labels)
  if hypercube.preferred(len(query_codes), n, bits, hypercube.table_count(query_labels)):
    counts = hypercube.distance_counts(query_codes, db_codes, query_labels, db_labels)
    body = _per_query_metrics_counted
    query_arrays += tuple(c.astype(np.int32) for c in counts)
  per_query = in_batches(body, dict(ks=ks, chunk=chunk), query_arrays,
                         (db_codes.astype(np.uint8), db_labels), batch)
  names = [f"{m}@{k}" for k in ks for m in ("p", "r", "map")]
  names += [f"p@{k}_tie_aware" for k in ks]
  names += [f"ndcg@{k}" for k in ks] + ["map@all", f"p@r{RADIUS}", f"p@r{RADIUS}_empty"]
  return {**{name: float(np.average(np.asarray(per_query[name], np.float64),
                                   weights=multiplicity)) for name in names}, **extra}


def _per_query_histogram(query_codes, query_labels, db_codes, db_labels, *, chunk):
  """([queries, bits + 1], [queries, bits + 1]) int32 counts per distance."""
  bits, db_words = db_codes.shape[1], pack_codes(db_codes)

  def counts(words, labels):
    items, relevant = split_counts(count_pass(words, labels, db_words, db_labels, bits))
    return items.T, relevant.T

  return map_chunks(counts, chunk, pack_codes(query_codes), query_labels)


def distance_histogram(query_codes, db_codes, query_labels, db_labels,
                       memory_budget_bytes: int = 256 * 2**20):
  """Database items per Hamming distance from each query, in one pass.

  Arguments as `evaluate`'s. Returns (items, relevant): [queries, bits + 1]
  int64 arrays; items[q, d] counts the database items at distance d from
  query q, relevant[q, d] the relevant ones among them.
  """
  query_codes, db_codes = np.asarray(query_codes), np.asarray(db_codes)
  query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
  check_codes(query_codes, db_codes)
  _check_labels(query_codes, db_codes, query_labels, db_labels)
  bits = db_codes.shape[1]
  if query_codes.shape[0] == 0:
    return np.zeros((0, bits + 1), np.int64), np.zeros((0, bits + 1), np.int64)
  if hypercube.preferred(len(query_codes), len(db_codes), bits,
                         hypercube.table_count(query_labels)):
    return hypercube.distance_counts(query_codes, db_codes, query_labels, db_labels)
  chunk = chunk_size(queries_per_device(query_codes), bits, 0, memory_budget_bytes)
  items, relevant = over_devices(
      _per_query_histogram, dict(chunk=chunk),
      (query_codes.astype(np.uint8), query_labels),
      (db_codes.astype(np.uint8), db_labels))
  return items.astype(np.int64), relevant.astype(np.int64)


def radius_curve(query_codes, db_codes, query_labels, db_labels,
                 memory_budget_bytes: int = 256 * 2**20) -> dict[str, np.ndarray]:
  """Precision and recall of the Hamming ball of each radius 0..bits.

  Arguments as `evaluate`'s; one pass over the database (the histogram of
  `distance_histogram`). Returns {"radius", "precision", "recall", "empty"},
  each [bits + 1], means over queries at radius r of: relevant items within
  distance r over the items within it (0 when the ball is empty, as p@r2);
  the same over the relevant items in the database (0 when there are none,
  as r@K); and whether the ball is empty. No tie rule enters. At radius 2
  the precision is evaluate's p@r2, at radius bits the recall is the
  fraction of queries with a relevant item.
  """
  items, relevant = distance_histogram(query_codes, db_codes, query_labels, db_labels,
                                       memory_budget_bytes)
  ball, found = np.cumsum(items, 1), np.cumsum(relevant, 1)
  total = found[:, -1:]
  return dict(radius=np.arange(items.shape[1]),
              precision=np.mean(found / np.maximum(ball, 1), 0),
              recall=np.mean(found / np.maximum(total, 1), 0),
              empty=np.mean(ball == 0, 0))
