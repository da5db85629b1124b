"""Top-k Hamming ranking of the database for each query, ties by database
position (the order hashvae.retrieval.metrics.evaluate uses), with each
query's count of items at every distance up to its k-th item's, so that a
caller can show how many tie. The search is multi_index's: it looks only
near each query, and compares every item only where the nearest lie far.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hashvae.retrieval.multi_index import MultiIndex


@dataclasses.dataclass(frozen=True)
class Ranking:
  positions: np.ndarray  # [queries, k] int64 database positions, nearest first
  distances: np.ndarray  # [queries, k] int64 Hamming distances
  # [queries, bits + 1] int64 items at each distance: exact up to the k-th
  # item's distance, -1 beyond it where the search did not look.
  counts: np.ndarray


def rank(query_codes, table: MultiIndex, k: int) -> Ranking:
  """The top min(k, items) of the database of `table` for each query of
  `query_codes` ([queries, bits] in {0, 1})."""
  if k < 1:
    raise ValueError(f"k={k}: at least 1 result per query")
  query_codes = np.asarray(query_codes, np.uint8)
  k = min(k, len(table.words))
  queries = len(query_codes)
  positions = np.zeros((queries, k), np.int64)
  distances = np.zeros((queries, k), np.int64)
  counts = np.zeros((queries, table.bits + 1), np.int64)
  for row, code in enumerate(query_codes):
    positions[row], distances[row], counts[row] = table.search(code, k)
  return Ranking(positions, distances, counts)
