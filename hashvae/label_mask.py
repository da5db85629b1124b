"""Which training items keep their label, as a traced function of the level.

Every item gets a random rank; an item is labelled when its rank is below
floor(p * n). No boolean indexing, so one compiled program serves every p.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def labelled_count(level, n: int):
  """floor(p * n) for a traced float32 p, exact for decimal levels.

  float32 p * n can land just below an integer (0.7 * 10 = 6.9999...), so
  instead count the k whose float32 quotient k / n does not exceed p: the
  largest such k is floor(p * n) whenever p is the rounding of a decimal.
  """
  level = jnp.clip(jnp.asarray(level, jnp.float32), 0.0, 1.0)
  guess = jnp.floor(level * n).astype(jnp.int32)
  k = guess + jnp.arange(-1, 2, dtype=jnp.int32)  # the answer is among these
  ok = (k >= 0) & (k <= n) & ((k.astype(jnp.float32) / n) <= level)
  return jnp.max(jnp.where(ok, k, 0))


def label_mask(key, level, segment_sizes: Sequence[int]):
  """[sum(segment_sizes)] float32 in {0, 1}: floor(p * n_s) ones per segment.

  The segments are consecutive blocks of the training set (e.g. train then
  validation, drawn separately as the released code did; or one block).
  """
  parts = []
  for i, n in enumerate(segment_sizes):
    if n == 0:
      continue
    u = jax.random.uniform(jax.random.fold_in(key, i), (n,))
    rank = jnp.argsort(jnp.argsort(u))
    parts.append((rank < labelled_count(level, n)).astype(jnp.float32))
  return jnp.concatenate(parts)
