"""Every query's counts per Hamming distance without comparing pairs.

A b-bit code is one of 2^b corners of the hypercube. Let n[x] count the
database items with code x (all of them, or those relevant to a query's
label). The items at distance d from code q number

    sum_x n[x] [popcount(x ^ q) = d] = (n * k_d)(q),

an XOR-convolution of n with k_d, the indicator of the codes of weight d.
The Walsh-Hadamard transform H turns XOR-convolution into a product,
H(n * k_d) = H(n) H(k_d), and H(k_d)(s) depends only on popcount(s): it is
the Krawtchouk polynomial K_d(popcount(s)). So one forward transform per
table and b + 1 inverse ones give the counts at every distance for every
possible query code, in (b + 2) b 2^b additions per table, whatever the
number of items or queries.

Tables: the whole database, plus one per query class (single-label data) or
per distinct query label set (multi-label data: the items sharing a label
with it). Everything is exact integer arithmetic in numpy int64: the
transforms wrap modulo 2^64, and the final value, items x 2^b at most, fits.
The host does this work; it is a few hundred vector operations of 2^b
elements, so there is nothing for a device to win.
"""

from __future__ import annotations

import math

import numpy as np

# Beyond this many bits a table no longer fits a cache-friendly size and the
# pairwise pass is the better tool whatever the sizes.
MAX_BITS = 24
# Bytes of transformed tables held at once; more tables are done in groups.
TABLE_BUDGET_BYTES = 256 * 2**20
# The per-pair cost of the pairwise count pass against one addition here,
# so that `preferred` compares like with like (measured order of magnitude:
# a pair compared on a device lane costs a few additions in numpy).
PAIR_COST = 2.0


def code_values(codes: np.ndarray) -> np.ndarray:
  """[rows, bits] in {0, 1} -> [rows] int64, code bit j as value bit j."""
  codes = np.asarray(codes)
  weights = np.left_shift(np.int64(1), np.arange(codes.shape[1], dtype=np.int64))
  return codes.astype(np.int64) @ weights


def walsh_hadamard(tables: np.ndarray) -> np.ndarray:
  """The unnormalised transform along the last axis: [t, 2^b] -> [t, 2^b]."""
  count, size = tables.shape
  out, half = tables, 1
  while half < size:
    pairs = out.reshape(count, -1, 2, half)
    low, high = pairs[:, :, 0], pairs[:, :, 1]
    out = np.stack((low + high, low - high), axis=2)
    half *= 2
  return out.reshape(count, size)


def krawtchouk(bits: int) -> np.ndarray:
  """[bits + 1 (distance d), bits + 1 (weight w)] int64: the transform of
  the weight-d indicator at any code of weight w,
  sum_j (-1)^j C(w, j) C(bits - w, d - j)."""
  out = np.zeros((bits + 1, bits + 1), np.int64)
  for d in range(bits + 1):
    for w in range(bits + 1):
      out[d, w] = sum((-1) ** j * math.comb(w, j) * math.comb(bits - w, d - j)
                      for j in range(max(0, d - (bits - w)), min(w, d) + 1))
  return out


def _weights(bits: int) -> np.ndarray:
  """[2^bits] popcount of every code value."""
  weight = np.zeros(1, np.int64)
  for _ in range(bits):
    weight = np.concatenate([weight, weight + 1])
  return weight


def _relevant_tables(db_values, query_labels, db_labels, bits):
  """(tables [groups, 2^bits] int64 item counts relevant to each group of
  queries, group [queries] the row of each query)."""
  size = 1 << bits
  if query_labels.ndim == 1:
    classes, group = np.unique(query_labels, return_inverse=True)
    tables = np.zeros((len(classes), size), np.int64)
    keep = np.isin(db_labels, classes)
    row = np.searchsorted(classes, db_labels[keep])
    np.add.at(tables, (row, db_values[keep]), 1)
    return tables, group
  sets, group = np.unique(np.asarray(query_labels) > 0, axis=0, return_inverse=True)
  sets = sets.astype(np.float32)
  tables = np.zeros((len(sets), size), np.int64)
  block = max(1, (64 * 2**20) // (4 * max(len(sets), 1)))  # [block, sets] float32
  for start in range(0, len(db_values), block):
    shares = (np.asarray(db_labels[start:start + block], np.float32) @ sets.T) > 0
    items, sets_hit = np.nonzero(shares)
    tables += np.bincount(sets_hit * size + db_values[start:start + block][items],
                          minlength=len(sets) * size).reshape(len(sets), size)
  return tables, group.reshape(-1)


def table_count(query_labels) -> int:
  """How many tables `distance_counts` transforms for these query labels."""
  query_labels = np.asarray(query_labels)
  if query_labels.ndim == 1:
    return 1 + len(np.unique(query_labels))
  return 1 + len(np.unique(query_labels > 0, axis=0))


def preferred(queries: int, items: int, bits: int, tables: int) -> bool:
  """Whether the transforms cost less than comparing every pair."""
  if bits > MAX_BITS:
    return False
  return tables * (bits + 2) * bits * 2.0**bits < PAIR_COST * queries * items


def distance_counts(query_codes, db_codes, query_labels, db_labels):
  """Items and relevant items at each distance from each query.

  query_codes: [queries, bits], db_codes: [items, bits] in {0, 1};
  labels: [queries] / [items] ints, or multi-hot [queries, classes] /
  [items, classes] (relevant: at least one shared label).
  Returns (items, relevant): [queries, bits + 1] int64.
  """
  bits = np.shape(db_codes)[1]
  if bits > MAX_BITS:
    raise ValueError(f"the hypercube counts take at most {MAX_BITS} bits, got {bits}")
  query_values, db_values = code_values(query_codes), code_values(db_codes)
  query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
  relevant_tables, group = _relevant_tables(db_values, query_labels, db_labels, bits)
  everything = np.bincount(db_values, minlength=1 << bits)[None].astype(np.int64)
  kernel = krawtchouk(bits)[:, _weights(bits)]  # [bits + 1, 2^bits]
  items = _convolve(everything, kernel, bits)[0][:, query_values].T
  relevant = np.zeros((len(query_values), bits + 1), np.int64)
  per_group = max(1, TABLE_BUDGET_BYTES // (8 * (bits + 2) << bits))
  for first in range(0, len(relevant_tables), per_group):
    counts = _convolve(relevant_tables[first:first + per_group], kernel, bits)
    mine = (group >= first) & (group < first + per_group)
    relevant[mine] = counts[group[mine] - first, :, query_values[mine]]
  return items, relevant


def _convolve(tables, kernel, bits):
  """[t, 2^bits] counts -> [t, bits + 1, 2^bits]: at [i, d, q] the count of
  table i over the codes at distance d from q."""
  spectrum = walsh_hadamard(tables)
  out = np.empty((len(tables), bits + 1, 1 << bits), np.int64)
  for d in range(bits + 1):
    out[:, d] = walsh_hadamard(spectrum * kernel[d]) >> bits  # exact multiples
  return out
