"""Top-k Hamming ranking of bit-packed codes, ties by database position (the
order hashvae.retrieval.metrics.evaluate uses), with each query's count of
items at every distance so that a caller can show how many tie.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Queries compared with the database at once: at most QUERY_BLOCK, and fewer
# for a large database, so that a block's [queries, items, bytes] comparison
# stays within QUERY_BLOCK_BYTES.
QUERY_BLOCK = 256
QUERY_BLOCK_BYTES = 64 * 2**20
POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], np.uint8)


@dataclasses.dataclass(frozen=True)
class Ranking:
  positions: np.ndarray  # [queries, k] int64 database positions, nearest first
  distances: np.ndarray  # [queries, k] int64 Hamming distances
  counts: np.ndarray  # [queries, bits + 1] int64 items at each distance


def distances(packed_queries: np.ndarray, packed_db: np.ndarray) -> np.ndarray:
  """[queries, bytes] x [items, bytes] packed codes -> [queries, items] int64."""
  differ = np.bitwise_xor(packed_queries[:, None, :], packed_db[None, :, :])
  return POPCOUNT[differ].sum(-1, dtype=np.int64)


def top_k(dist: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
  """One query's [items] distances -> (its k nearest positions, ties by
  position; [bits + 1] items per distance). Only items up to the k-th
  item's distance are sorted."""
  counts = np.bincount(dist, minlength=bits + 1)
  limit = int(np.searchsorted(np.cumsum(counts), k))  # the k-th item's distance
  near = np.flatnonzero(dist <= limit)
  order = near[np.argsort(dist[near], kind="stable")[:k]]
  return order, counts


def rank(packed_queries, packed_db, bits: int, k: int) -> Ranking:
  """The top min(k, items) per query of `packed_queries` [queries, bytes]
  among `packed_db` [items, bytes] (np.packbits along bits)."""
  if k < 1:
    raise ValueError(f"k={k}: at least 1 result per query")
  packed_queries = np.asarray(packed_queries, np.uint8)
  packed_db = np.asarray(packed_db, np.uint8)
  k = min(k, len(packed_db))
  queries = len(packed_queries)
  positions = np.zeros((queries, k), np.int64)
  counts = np.zeros((queries, bits + 1), np.int64)
  nearest = np.zeros((queries, k), np.int64)
  size = int(np.clip(QUERY_BLOCK_BYTES // max(packed_db.size, 1), 1, QUERY_BLOCK))
  for start in range(0, queries, size):
    block = distances(packed_queries[start:start + size], packed_db)
    for row, dist in enumerate(block, start=start):
      positions[row], counts[row] = top_k(dist, k, bits)
      nearest[row] = dist[positions[row]]
  return Ranking(positions, nearest, counts)
