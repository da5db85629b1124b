"""Sparse bag-of-words rows in the forms the input path passes around.

On the device: a batch as padded (column, value) lists (`SparseRows`) or as
a flat list of its entries (`SparseEntries`), read by gathering kernel rows
(`gather_rows`); a whole split in CSR form (`CsrRows`), whose `take` reads a
batch of it. On the host: canonical CSR copies and padded lists of any
dense or scipy.sparse rows. sparse.py plans how a training step uses them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse

from hashvae.data.dataset import bag_of_words


class SparseRows(NamedTuple):
  """A padded bag of words: item i holds values[i, j] at column indices[i, j].

  Padding entries have index = the table's row count (out of range: read as
  a zero row, their gradient dropped) and value 0.

  Attributes:
    indices: [items, width] int32, a row's nonzero columns, then padding.
    values: [items, width] float32, their values, then zeros.
    rows: None (the indices are columns of the input, i.e. rows of the first
      kernel) or [rows, features] kernel rows the indices point into instead;
      the training step passes the rows a batch reads, so that the gradient
      is taken with respect to those rows only.
  """

  indices: jax.Array
  values: jax.Array
  rows: Optional[jax.Array] = None


class SparseEntries(NamedTuple):
  """A sparse batch as a flat list of its nonzero entries: entry k adds
  values[k] * rows[indices[k]] to item items[k].

  Shorter than a SparseRows batch's [items, width] when the widths vary.
  Padding entries have item = num_items (dropped) and value 0.

  Attributes:
    indices: [entries] int32, rows of `rows` (out of range: a zero row).
    values: [entries] float32.
    items: [entries] int32, the item each entry belongs to.
    rows: [rows, features], the kernel rows the batch reads.
    num_items: the batch size, a Python int (the output's shape): build a
      SparseEntries inside the traced function, not as a jit argument.
  """

  indices: jax.Array
  values: jax.Array
  items: jax.Array
  rows: jax.Array
  num_items: int


def gather_rows(table, indices):
  """table[indices] with out-of-range indices read as zero rows.

  [rows, features], [...] int -> [..., features]. The gradient with respect
  to `table` drops the out-of-range (padding) entries.
  """
  return jnp.take(table, indices, axis=0, mode="fill", fill_value=0)


def to_dense(x, dims: int):
  """A dense [..., dims] array from itself or from a SparseRows [..., width]."""
  if not isinstance(x, SparseRows):
    return x
  lead, width = x.indices.shape[:-1], x.indices.shape[-1]
  indices, values = x.indices.reshape(-1, width), x.values.reshape(-1, width)
  items = jnp.arange(indices.shape[0])[:, None]
  dense = jnp.zeros((indices.shape[0], dims), values.dtype).at[items, indices].add(
      values, mode="drop")
  return dense.reshape(lead + (dims,))


# --- host side ---------------------------------------------------------------


def host_csr(x) -> scipy.sparse.csr_matrix:
  """A dense array or any scipy.sparse matrix -> canonical float32 CSR (sorted
  columns, no duplicates or stored zeros); a canonical one is returned as is."""
  return bag_of_words(x if scipy.sparse.issparse(x) else scipy.sparse.csr_matrix(x))


def row_widths(x) -> np.ndarray:
  """[items, dims] (dense or CSR) -> [items] number of nonzeros per row."""
  if scipy.sparse.issparse(x):
    return np.diff(host_csr(x).indptr)
  return np.count_nonzero(x, axis=1)


def padded_rows(x) -> tuple[np.ndarray, np.ndarray]:
  """[items, dims] (dense or CSR) -> (indices, values), both [items, width].

  Row i lists its nonzero columns in increasing order, then padding (index
  dims, value 0); width is the most nonzeros in any row (at least 1).
  """
  x = host_csr(x)
  items, dims = x.shape
  counts = np.diff(x.indptr)
  width = max(int(counts.max(initial=0)), 1)
  row = np.repeat(np.arange(items), counts)
  slot = np.arange(x.nnz) - x.indptr[row]
  indices = np.full((items, width), dims, np.int32)
  values = np.zeros((items, width), np.float32)
  indices[row, slot] = x.indices
  values[row, slot] = x.data
  return indices, values


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["indptr", "indices", "values"],
                   meta_fields=["dims", "width"])
@dataclasses.dataclass(frozen=True)
class CsrRows:
  """A sparse [items, dims] matrix on the device, in CSR form: memory grows
  with the nonzeros. `take` reads a batch of its rows as a padded SparseRows.

  Attributes:
    indptr: [items + 1] int32, row i's entries are indptr[i]:indptr[i + 1].
    indices: [nnz] int32 columns, ascending within a row.
    values: [nnz] float32.
    dims: the column count (static).
    width: the most entries in any row, at least 1 (static): a batch's
      padded width.
  """

  indptr: jax.Array
  indices: jax.Array
  values: jax.Array
  dims: int
  width: int

  @classmethod
  def from_host(cls, x) -> "CsrRows":
    """[items, dims] dense or CSR host rows -> device CsrRows."""
    x = host_csr(x)
    if x.nnz >= 2**31:
      raise ValueError(f"{x.nnz} nonzeros: more than int32 indices address")
    width = max(int(np.diff(x.indptr).max(initial=0)), 1)
    return cls(jnp.asarray(x.indptr, jnp.int32), jnp.asarray(x.indices, jnp.int32),
               jnp.asarray(x.data, jnp.float32), x.shape[1], width)

  @property
  def items(self) -> int:
    return self.indptr.shape[0] - 1

  def positions(self, idx):
    """idx [...] item indices -> [..., width] positions of their entries in
    `indices` / `values`, padding -> nnz (out of range)."""
    start = self.indptr[idx]
    length = self.indptr[idx + 1] - start
    slot = jnp.arange(self.width)
    return jnp.where(slot < length[..., None], start[..., None] + slot,
                     self.indices.shape[0])

  def take(self, idx, values=None) -> SparseRows:
    """Rows idx [...] as a SparseRows [..., width], columns ascending, then
    padding; `values` [nnz]: other values on the same nonzeros (the
    targets) read instead of `self.values`."""
    pos = self.positions(idx)
    fill = lambda a, v: jnp.take(a, pos, mode="fill", fill_value=v)
    return SparseRows(fill(self.indices, self.dims),
                      fill(self.values if values is None else values, 0))
