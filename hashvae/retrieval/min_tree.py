"""Exact top-k Hamming search by a tree of block minima, in jax.

Each query gives every database item a key, distance * items + position,
so that keys are distinct and their order is the ranking `evaluate` scores
(Hamming distance, ties by database position). The items are cut into
blocks of BLOCK consecutive positions; level 1 holds each block's smallest
key, level 2 each block of BLOCK level-1 minima's smallest, and so on,
until a level has at most k * BLOCK entries.

The k smallest keys of a level lie in the k blocks of the level above
with the smallest minima: a block outside those has at least k blocks
with a smaller minimum, each holding a smaller key. So a search keeps the
top level's k smallest and walks down: of the children of the k blocks
kept (k * BLOCK keys), the k smallest are kept, down to the items, whose
keys are computed again from their codes. The database is read once, in
the fused distance-and-minimum pass that builds level 1; the rest selects
among k * BLOCK keys per level, whatever the number of items. Nothing is
scattered, and no [queries, items] array is kept.

A level's k smallest are selected without a sort, which XLA:CPU runs one
comparison at a time: the k-th smallest key is found bit by bit from the
top (each bit one vectorised count of the keys at or below a bound), and
the keys at or below it are gathered in place order by a binary search of
their running count. Only the k keys found at the bottom are sorted.

The keys are int32 (jax runs without x64), so the database can hold up to
`max_items(bits)` items; `metrics.nearest` takes its counting pass beyond.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BLOCK = 8
# Queries per chunk at most: the selections work per query, so larger chunks gain little.
MAX_CHUNK = 16
_NONE = np.iinfo(np.int32).max  # the key of a padding slot: after every item


def max_items(bits: int) -> int:
  """The largest database whose keys (bits + 1) * items fit in int32."""
  return (np.iinfo(np.int32).max - 1) // (bits + 1)


def levels(items: int, k: int) -> int:
  """Levels of block minima above the items: the top one has at most
  k * BLOCK entries (or is level 1)."""
  count, size = 1, -(-items // BLOCK)
  while size > k * BLOCK:
    count, size = count + 1, -(-size // BLOCK)
  return count


def padded_items(items: int, k: int) -> int:
  """The database padded so that each level's blocks are whole."""
  step = BLOCK ** levels(items, k)
  return -(-items // step) * step


def chunk_size(queries: int, items: int, bits: int, k: int, budget: int) -> int:
  """Queries searched together, within `budget` bytes: each holds its
  level-1 minima and k * BLOCK gathered codes and keys."""
  words = -(-bits // 32)
  per_query = 4 * (padded_items(items, k) // BLOCK + k * BLOCK * (words + 3))
  return int(max(1, min(queries, MAX_CHUNK, budget // per_query)))


def chunk_top_k(query_words, db_words, *, items: int, k: int):
  """[chunk, words] packed queries against [padded_items, words] packed
  database (the first `items` rows real) -> [chunk, k] int32 positions,
  nearest first, ties by position."""
  chunk, padded = query_words.shape[0], db_words.shape[0]
  # Keys are below (bits + 1) * items (bits rounded up to whole words) and
  # below 2^31: the bit search needs no more bits.
  bits = 32 * query_words.shape[1]
  key_bits = min(31, max(1, ((bits + 1) * items - 1).bit_length()))
  position = jnp.arange(padded, dtype=jnp.int32).reshape(-1, BLOCK)
  blocks = db_words.reshape(-1, BLOCK, db_words.shape[1])
  dist = jnp.sum(lax.population_count(query_words[:, None, None, :] ^ blocks[None]), -1,
                 dtype=jnp.int32)
  keys = jnp.where(position < items, dist * items + position, _NONE)
  minima = [jnp.min(keys, axis=-1)]  # [chunk, padded / BLOCK]
  for _ in range(levels(items, k) - 1):
    minima.append(jnp.min(minima[-1].reshape(chunk, -1, BLOCK), axis=-1))
  top = smallest(minima[-1], k, key_bits)
  offsets = jnp.arange(BLOCK, dtype=jnp.int32)
  for level in range(len(minima) - 1, -1, -1):
    # The blocks of this level holding the k smallest keys, and their
    # children: entries of the level below, or items at the bottom.
    block = jnp.where(top == _NONE, 0, (top % items) // BLOCK ** (level + 1))
    children = (block[:, :, None] * BLOCK + offsets).reshape(chunk, -1)
    if level:
      keys = jnp.take_along_axis(minima[level - 1], children, axis=1)
    else:
      dist = jnp.sum(lax.population_count(query_words[:, None, :] ^ db_words[children]),
                     -1, dtype=jnp.int32)
      keys = jnp.where(children < items, dist * items + children, _NONE)
    padding = jnp.repeat(top == _NONE, BLOCK, axis=1)
    top = smallest(jnp.where(padding, _NONE, keys), k, key_bits)
  return jnp.sort(top, axis=-1) % items


def smallest(keys, k: int, key_bits: int):
  """[chunk, n] int32 keys, distinct and below 2^key_bits except _NONE
  padding -> [chunk, k] the k smallest, in their order in `keys` (_NONE in
  the slots left when fewer than k are not padding)."""
  if keys.shape[1] <= k:
    return jnp.pad(keys, ((0, 0), (0, k - keys.shape[1])), constant_values=_NONE)
  # threshold: the smallest t with k keys at or below it (2^key_bits - 1
  # when there are fewer), set bit by bit from the top.
  def set_bit(step, threshold):
    bit = jnp.left_shift(1, key_bits - 1 - step)
    below = jnp.sum(keys <= (threshold + bit - 1)[:, None], axis=1)
    return jnp.where(below < k, threshold + bit, threshold)

  threshold = lax.fori_loop(0, key_bits, set_bit, jnp.zeros(keys.shape[:1], jnp.int32))
  kept = (keys <= threshold[:, None]) & (keys != _NONE)
  running = _running_count(kept)
  # Slot j takes the first key whose running count reaches j + 1.
  slots = jnp.arange(1, k + 1, dtype=jnp.int32)
  place = jax.vmap(lambda counts: jnp.searchsorted(counts, slots))(running)
  found = jnp.take_along_axis(keys, jnp.minimum(place, keys.shape[1] - 1), axis=1)
  return jnp.where(place < keys.shape[1], found, _NONE)


def _running_count(mask):
  """[chunk, n] bool -> [chunk, n] int32 its cumulative sum along n, by
  groups of BLOCK and then across their totals (faster on XLA:CPU than one
  cumsum along the row; docs/performance.md)."""
  chunk, n = mask.shape
  groups = -(-n // BLOCK)
  padded = jnp.pad(mask.astype(jnp.int32), ((0, 0), (0, groups * BLOCK - n)))
  within = jnp.cumsum(padded.reshape(chunk, groups, BLOCK), axis=2)
  totals = within[:, :, -1]
  before = jnp.cumsum(totals, axis=1) - totals
  return (within + before[:, :, None]).reshape(chunk, -1)[:, :n]
