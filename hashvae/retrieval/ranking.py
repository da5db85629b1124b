"""Top-k Hamming ranking of the database for each query, ties by database
position (the order hashvae.retrieval.metrics.evaluate uses), with each
query's count of items at every distance up to its k-th item's, so that a
caller can show how many tie. The search is multi_index's: it looks only
near each query, and compares every item only where the nearest lie far.

Given the queries' code scores, the ties can be broken by the model
instead (rerank.py's "tie_break": every item up to the k-th item's
distance is fetched and reordered), or the database ranked by the
confidence-weighted distance alone ("asymmetric": a full pass).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hashvae.retrieval.multi_index import MultiIndex

# The rankings by the query's code scores (rerank.py has their definition).
RANKINGS = ("tie_break", "asymmetric")


@dataclasses.dataclass(frozen=True)
class Ranking:
  positions: np.ndarray  # [queries, k] int64 database positions, nearest first
  distances: np.ndarray  # [queries, k] int64 Hamming distances
  # [queries, bits + 1] int64 items at each distance: exact up to the k-th
  # item's distance, -1 beyond it where the search did not look.
  counts: np.ndarray


def rank(query_codes, table: MultiIndex, k: int, query_scores=None,
         ranking: str = "hamming") -> Ranking:
  """The top min(k, items) of the database of `table` for each query of
  `query_codes` ([queries, bits] in {0, 1}), by Hamming distance or, with
  the queries' [queries, bits] `query_scores`, by one of RANKINGS."""
  if k < 1:
    raise ValueError(f"k={k}: at least 1 result per query")
  if ranking != "hamming" and (ranking not in RANKINGS or query_scores is None):
    raise ValueError(f"ranking {ranking!r} needs the queries' code scores and one of "
                     f"{('hamming',) + RANKINGS}")
  query_codes = np.asarray(query_codes, np.uint8)
  k = min(k, len(table.words))
  queries = len(query_codes)
  positions = np.zeros((queries, k), np.int64)
  distances = np.zeros((queries, k), np.int64)
  counts = np.zeros((queries, table.bits + 1), np.int64)
  for row, code in enumerate(query_codes):
    if ranking == "asymmetric":
      found = _every_item(table, code)
    else:
      found = table.search(code, k)
      last = int(found[1][-1])
      within = int(found[2][:last + 1].sum())  # every item up to the k-th's distance
      if ranking == "tie_break" and within > k:
        found = table.search(code, within)
    candidates, dist, counts[row] = found
    order = np.arange(k)
    if ranking != "hamming":
      order = rerank_candidates(query_scores[row], candidates, dist,
                                table.codes(candidates), ranking)[:k]
    positions[row], distances[row] = candidates[order], dist[order]
  return Ranking(positions, distances, counts)


def _every_item(table: MultiIndex, code):
  """(every position, its distance, [bits + 1] items per distance)."""
  dist = table.distances(code)
  return np.arange(len(dist)), dist, np.bincount(dist, minlength=table.bits + 1)


def rerank_candidates(scores, positions, distances, codes, ranking: str):
  """Orders one query's candidates by `ranking`, in numpy (for the index):
  [n] positions, their [n] Hamming distances and [n, bits] {0, 1} codes,
  every item up to the last one's distance when ranking by "tie_break"
  (the whole database for "asymmetric"). Returns the order, [n] indices
  into the candidates."""
  scores = np.asarray(scores, np.float64)
  differ = np.asarray(codes).astype(bool) != (scores > 0)
  weighted = differ.astype(np.float64) @ np.tanh(np.abs(scores) / 2)
  first = distances if ranking == "tie_break" else np.zeros_like(distances)
  return np.lexsort((positions, weighted, first))
