"""training.encode: streamed scores equal one vmapped pass over every item,
whatever the block, and a sparse read caps the block by its padded width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse

from hashvae.core.sparse import CsrRows
from hashvae.training import encode


@pytest.mark.parametrize("items,block", [(7, 3), (6, 3), (5, 8), (1, 1)])
def test_streamed_scores_match_one_pass(items, block):
  table = jax.random.normal(jax.random.key(0), (items, 4))
  score = lambda i: jnp.tanh(table[i]) * (i + 1)
  want = np.asarray(jax.vmap(score)(jnp.arange(items)))
  got = np.asarray(encode.streamed_scores(score, items, block, "test"))
  assert got.shape == (items, 4) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_stream_shape_dense_and_sparse():
  dense = jnp.zeros((10, 5))
  assert encode.stream_shape(dense, 4, sparse_read=True) == (10, 4)
  widths = np.array([3, 1, 0, 2])  # nonzeros per row: padded width 3
  rows = scipy.sparse.csr_matrix(
      (np.ones(widths.sum()), np.concatenate([np.arange(w) for w in widths]),
       np.concatenate([[0], np.cumsum(widths)])), shape=(4, 6))
  csr = CsrRows.from_host(rows)
  assert csr.width == 3
  big = encode.ENCODE_ENTRIES  # more items per block than the cap allows
  assert encode.stream_shape(csr, big, sparse_read=True) == (4, encode.ENCODE_ENTRIES // 3)
  assert encode.stream_shape(csr, big, sparse_read=False) == (4, big)
  assert encode.stream_shape(csr, 2, sparse_read=True) == (4, 2)
