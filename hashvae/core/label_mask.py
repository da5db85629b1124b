"""Which training items keep their label, as a traced function of the level.

Every item gets a random rank; an item is labelled when its rank is below
floor(p * n). No boolean indexing, so one compiled program serves every p.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def labelled_count(level, n: int):
  """floor(p * n) for a traced float32 p, exact for p with up to 6 decimals.

  float32 arithmetic is not enough (0.9 * 10 can come out as 8.99999): p is
  rounded to millionths, m = round(p * 1e6), and floor(m * n / 1e6) is taken
  in int32 pieces small enough not to overflow for n < 2 million.
  """
  if not 0 < n < 2_000_000:
    raise ValueError(f"labelled_count supports 0 < n < 2,000,000, got {n}")
  level = jnp.clip(jnp.asarray(level, jnp.float32), 0.0, 1.0)
  millionths = jnp.round(level * 1e6).astype(jnp.int32)
  high, low = millionths // 1000, millionths % 1000  # m = 1000 high + low
  a = high * n  # < 2^31: high <= 1000
  return a // 1000 + ((a % 1000) * 1000 + low * n) // 1_000_000


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
