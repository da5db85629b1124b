"""A trained network's code scores over every item, streamed in blocks.

Encoding the whole database at once would hold every item's hidden
activations; a `lax.map` over blocks holds one block's.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from hashvae.core.sparse import CsrRows
from hashvae.training import progress

# A sparse encode block's items x padded width: the first layer gathers that
# many kernel rows at once (x its width x 4 bytes: 16 MB at 500 features).
ENCODE_ENTRIES = 2**13


def stream_shape(inputs, batch_size: int, sparse_read: bool) -> tuple[int, int]:
  """(items, items per block) of device inputs (dense, or CsrRows): blocks
  of `batch_size`, or fewer items where a sparse read of padded CsrRows
  would gather more than ENCODE_ENTRIES kernel rows at once."""
  if not isinstance(inputs, CsrRows):
    return inputs.shape[0], batch_size
  if sparse_read:
    return inputs.items, max(1, min(batch_size, ENCODE_ENTRIES // inputs.width))
  return inputs.items, batch_size


def streamed_scores(scores: Callable, items: int, block: int, name: str):
  """scores(i) -> [bits] for one item index i, over items 0 .. items-1 in
  blocks of `block` -> [items, bits] float32. The last block repeats the
  last item; its extra rows are dropped. `name` labels the progress line."""
  blocks = -(-items // block)

  def one_block(b):
    out = jax.vmap(scores)(jnp.minimum(b * block + jnp.arange(block), items - 1))
    progress.report(f"encode {name}", b, blocks)
    return out

  out = jax.lax.map(one_block, jnp.arange(blocks))
  return out.reshape(blocks * block, -1)[:items].astype(jnp.float32)
