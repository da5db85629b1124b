"""Exact top-k Hamming search that looks only near the query: multi-index
hashing (Norouzi, Punjani and Fleet, CVPR 2012), in numpy.

A b-bit code is cut into m substrings of at most 16 bits, and the database
is sorted by each substring (one table per substring: the item ids in order
of substring value, ties by id, and where each value starts). If an item
lies within distance r of the query, at least one of its substrings lies
within floor(r / m) of the query's (pigeonhole). So probing, in every
table, the substring values at distance exactly s = 0, 1, 2, ... from the
query's finds, once level s is done, every item within distance
m (s + 1) - 1. The search stops at the first level where at least k of
the items found lie within that distance: the k-th nearest item then lies
within it too, so every item that can enter the top k has been found. The
candidates are ordered by distance, ties by database position: the order
of `hashvae.retrieval.metrics.evaluate`.

The cost is the buckets probed and the items found, not the database size,
which pays when the k nearest lie close (trained codes of 16 to 64 bits,
large databases). Where they lie far, the probes reach most buckets; past
FULL_PASS_SHARE of the database found, the search compares every item.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

SUBSTRING_BITS = 16
# The share of the database found by the probes above which a query compares
# every item instead: a found item costs a gather and a compare, an item of
# the full pass one compare.
FULL_PASS_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class Table:
  offset: int  # the substring's first code bit
  width: int  # its bits
  ids: np.ndarray  # [items] int64 database positions in order of substring value
  starts: np.ndarray  # [2^width + 1] int64: value v's items are ids[starts[v]:starts[v + 1]]


def substring_widths(bits: int) -> list[int]:
  """Widths of the m = ceil(bits / 16) substrings, as even as possible."""
  m = max(1, math.ceil(bits / SUBSTRING_BITS))
  return [bits // m + (i < bits % m) for i in range(m)]


def substring_values(codes: np.ndarray, offset: int, width: int) -> np.ndarray:
  """[rows, bits] in {0, 1} -> [rows] int64 values of bits offset..offset+width."""
  weights = np.left_shift(np.int64(1), np.arange(width, dtype=np.int64))
  return codes[:, offset:offset + width].astype(np.int64) @ weights


@dataclasses.dataclass(frozen=True)
class MultiIndex:
  bits: int
  words: np.ndarray  # [items, words] uint64: the packed codes, for distances
  tables: tuple  # of Table

  @classmethod
  def build(cls, codes: np.ndarray) -> "MultiIndex":
    """codes: [items, bits] in {0, 1}."""
    codes = np.asarray(codes, np.uint8)
    bits, tables, offset = codes.shape[1], [], 0
    for width in substring_widths(bits):
      values = substring_values(codes, offset, width)
      ids = np.argsort(values, kind="stable")
      starts = np.searchsorted(values[ids], np.arange((1 << width) + 1))
      tables.append(Table(offset, width, ids, starts.astype(np.int64)))
      offset += width
    return cls(bits, pack_words(codes), tuple(tables))

  def search(self, code: np.ndarray, k: int):
    """One query [bits] in {0, 1} -> (its min(k, items) nearest positions,
    their distances, nearest first, ties by position; [bits + 1] items at
    each distance, exact up to the k-th item's distance and -1 beyond it,
    where the search did not look). Gives up probing, and compares every
    item, once the probes have found FULL_PASS_SHARE of the database."""
    items, code = len(self.words), np.asarray(code, np.uint8)
    k = min(k, items)
    query = pack_words(code[None])[0]
    subs = [substring_values(code[None], t.offset, t.width)[0] for t in self.tables]
    ids, dists, found = [], [], 0
    for s in range(max(t.width for t in self.tables) + 1):
      new = np.concatenate([_bucket_items(t, v ^ masks(t.width, s))
                            for t, v in zip(self.tables, subs, strict=False) if s <= t.width])
      found += len(new)
      if found > FULL_PASS_SHARE * items:
        return self._full_pass(query, k)
      ids.append(new)
      dists.append(np.bitwise_count(self.words[new] ^ query).sum(1, dtype=np.int64))
      within = len(self.tables) * (s + 1) - 1
      near_ids, near = _unique_within(ids, dists, within)
      if len(near_ids) >= k:
        return _top(near_ids, near, k, self.bits, within)
    return self._full_pass(query, k)  # unreachable: the last level finds all

  def _full_pass(self, query, k):
    dist = self._distances(query)
    order, counts = top_k(dist, k, self.bits)
    return order, dist[order], counts

  def _distances(self, query_words):
    return np.bitwise_count(self.words ^ query_words).sum(1, dtype=np.int64)

  def distances(self, code: np.ndarray) -> np.ndarray:
    """[items] int64 Hamming distances of every item to one query [bits]."""
    return self._distances(pack_words(np.asarray(code, np.uint8)[None])[0])

  def codes(self, positions: np.ndarray) -> np.ndarray:
    """[n] positions -> their [n, bits] codes in {0, 1}."""
    as_bytes = self.words[positions].view(np.uint8).reshape(len(positions), -1)
    return np.unpackbits(as_bytes, axis=1, count=self.bits, bitorder="little")


def top_k(dist: np.ndarray, k: int, bits: int):
  """[items] distances -> (the k nearest positions, ties by position;
  [bits + 1] items per distance). Only items up to the k-th item's
  distance are sorted."""
  counts = np.bincount(dist, minlength=bits + 1)
  limit = int(np.searchsorted(np.cumsum(counts), k))  # the k-th item's distance
  near = np.flatnonzero(dist <= limit)
  return near[np.argsort(dist[near], kind="stable")[:k]], counts


def _unique_within(ids, dists, within):
  """The distinct items found (an item found through two substrings is one)
  within distance `within`, and their distances."""
  ids, dists = np.concatenate(ids), np.concatenate(dists)
  keep = dists <= within
  near_ids, first = np.unique(ids[keep], return_index=True)
  return near_ids, dists[keep][first]


def _top(ids, dist, k, bits, within):
  """Every item within `within` (at least k) -> the top-k and the counts."""
  order = np.lexsort((ids, dist))[:k]
  counts = np.full(bits + 1, -1, np.int64)
  last = int(dist[order[-1]])
  counts[:last + 1] = np.bincount(dist, minlength=last + 1)[:last + 1]
  return ids[order], dist[order], counts


def pack_words(codes: np.ndarray) -> np.ndarray:
  """[rows, bits] in {0, 1} -> [rows, ceil(bits / 64)] uint64 (padding 0)."""
  rows, bits = codes.shape
  words = -(-bits // 64)
  padded = np.zeros((rows, words * 64), np.uint8)
  padded[:, :bits] = codes
  return np.packbits(padded, axis=1, bitorder="little").view(np.uint64)


_MASKS: dict = {}


def masks(width: int, weight: int) -> np.ndarray:
  """[C(width, weight)] int64: every value of `width` bits with `weight` ones."""
  key = (width, weight)
  if key not in _MASKS:
    _MASKS[key] = np.array([sum(1 << b for b in chosen)
                            for chosen in itertools.combinations(range(width), weight)],
                           np.int64)
  return _MASKS[key]


def _bucket_items(table: Table, values: np.ndarray) -> np.ndarray:
  """The item positions of every bucket in `values`, concatenated."""
  first, last = table.starts[values], table.starts[values + 1]
  sizes = last - first
  total = int(sizes.sum())
  if total == 0:
    return np.zeros(0, np.int64)
  # Position j of the output lies in bucket b: first[b] + (j - where b begins).
  begins = np.cumsum(sizes) - sizes
  return table.ids[np.repeat(first - begins, sizes) + np.arange(total)]
