"""Bag-of-words rows as padded (column, value) lists, on the host and in a step.

Snippets has ~14 of 10,000 words a row, so the encoder's first layer reads
an item as the list of its nonzeros (`SparseRows`) and gathers those kernel
rows instead of multiplying by all of them. A training step goes one
further: it differentiates with respect to the kernel rows its batch reads
(`SparseInput.gradients`), so the [dims, features] gradient is never formed.

A step's row list has a fixed length. `SparseInput` sizes it for a typical
batch (Snippets: 1,344 rows and 1,792 entries against a worst case of 3,714
and 100 x 59); a batch that needs more takes the worst-case sizes
(`run_if`), so no batch is ever truncated.
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

INPUT_MODES = ("auto", "sparse", "dense")  # config.model.sparse_input
# "auto" picks the sparse path when the padded width (the most nonzeros in
# any row) is under this fraction of the input width: the gather then reads
# at most a tenth of the kernel rows the dense matmul multiplies by.
AUTO_SPARSE_WIDTH = 0.1
RUNS_AXIS = "vmapped_runs"  # the axis name a grid vmaps its runs over


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


def split_widths(data, splits=("train", "validation", "test")):
  """[items] nonzeros per row of the named splits' inputs, concatenated."""
  return np.concatenate([row_widths(getattr(data, s).inputs) for s in splits])


def use_sparse_input(mode: str, data) -> bool:
  """Resolves config.model.sparse_input ("auto", "sparse", "dense")."""
  if mode not in INPUT_MODES:
    raise ValueError(f"model.sparse_input={mode!r}: one of {INPUT_MODES}")
  if mode != "auto":
    return mode == "sparse"
  return split_widths(data).max(initial=0) < AUTO_SPARSE_WIDTH * data.dims


def max_batch_rows(widths: np.ndarray, batch_size: int, dims: int) -> int:
  """An upper bound on the distinct columns one batch can touch: the
  `batch_size` largest row widths, summed (at most dims)."""
  top = np.sort(widths)[::-1][:batch_size]
  return int(min(max(top.sum(), 1), dims))


def typical_batch_sizes(rows, batch_size: int, samples: int = 256,
                        margin: float = 1.1, multiple: int = 64):
  """(distinct columns, nonzero entries) a random batch needs, with room.

  rows: [items, dims] (dense or CSR), the training items. The most of each
  count over `samples` random batches (a fixed seed), times `margin`,
  rounded up to `multiple`. A step whose batch needs more takes the
  worst-case sizes instead (exact either way), so this only decides how
  often the cheap sizes serve.
  """
  rows = host_csr(rows)
  rng = np.random.default_rng(0)
  distinct = entries = 0
  for _ in range(samples):
    picked = np.sort(rng.choice(rows.shape[0], batch_size, replace=False))
    columns = rows[picked].indices
    distinct = max(distinct, len(np.unique(columns)))
    entries = max(entries, len(columns))
  room = lambda n: int(-(-max(n, 1) * margin // multiple) * multiple)
  return room(distinct), room(entries)


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


# --- in a step ---------------------------------------------------------------


def columns_seen(indices, dims: int):
  """[dims] bool: which columns the indices [...] (dims = padding) name."""
  return jnp.zeros(dims + 1, bool).at[indices].set(True)[:dims]


def batch_distinct(indices, dims: int):
  """How many distinct columns the indices [...] name (a scalar)."""
  return columns_seen(indices, dims).sum()


def batch_rows(indices, dims: int, size: int):
  """The distinct kernel rows a sparse batch reads, in a fixed-size list.

  indices [...] in [0, dims] (dims = padding) -> (rows [size] ascending,
  padded with dims; local [...]: each entry's position in `rows`, padding
  -> size). `size` must bound the distinct count (batch_distinct).
  """
  seen = columns_seen(indices, dims)
  rows = jnp.nonzero(seen, size=size, fill_value=dims)[0]
  position = jnp.cumsum(seen) - 1  # [dims]: the slot of each seen row
  local = jnp.where(indices < dims,
                    position[jnp.minimum(indices, dims - 1)], size)
  return rows, local


def batch_entries(indices, values, dims: int, size: int):
  """A padded [items, width] sparse batch's entries as a flat list.

  indices, values [items, width] (padding: index dims) -> (indices, values,
  items), each [size]: the entries in row-major order, then padding (index
  dims, value 0, item = items). `size` must bound the entry count.
  """
  items, width = indices.shape
  slot = jnp.nonzero((indices < dims).reshape(-1), size=size,
                     fill_value=items * width)[0]
  take = lambda a, fill: jnp.take(a.reshape(-1), slot, mode="fill",
                                  fill_value=fill)
  return take(indices, dims), take(values, 0), slot // width


def run_if(flag, fn, carry):
  """fn(carry) if flag else carry, as a while loop of 0 or 1 trips.

  Not lax.cond: a conditional's branches get copies of large operands they
  update (the stacked kernel and its moments, here), while a loop updates
  its carry in place.
  """
  return jax.lax.while_loop(lambda c: c[0], lambda c: (False, fn(c[1])),
                            (flag, carry))[1]


def in_every_run(flag):
  """`flag` (bool, any shape) reduced elementwise with `and` over the runs of
  a grid vmapped with axis_name=RUNS_AXIS: the result is the same for all
  runs, so a `run_if` on it stays a branch instead of running under vmap
  for every run, masked. Outside such a vmap it is `flag` itself (per-run
  branches, still correct)."""
  try:
    return jax.lax.pmin(flag.astype(jnp.int32), RUNS_AXIS) > 0
  except NameError:  # not under a vmap with that axis name
    return flag


@dataclasses.dataclass(frozen=True)
class SparseInput:
  """How a training step reads a sparse batch: the sizes of its row list.

  Attributes:
    dims: the input width (the first kernel's rows).
    batch_size: items per batch.
    worst: (rows, None): a row list any batch fits, read as padded rows.
    typical: (rows, entries) a random batch needs, with room, read as a flat
      entry list; None when it saves nothing over `worst`.
  """

  dims: int
  batch_size: int
  worst: tuple
  typical: Optional[tuple]

  @classmethod
  def plan(cls, rows, batch_size: int) -> "SparseInput":
    """Sizes for batches of the training items `rows` [items, dims] (dense
    or CSR; the database: train then validation)."""
    widths = row_widths(rows)
    distinct = max_batch_rows(widths, batch_size, rows.shape[1])
    padded = batch_size * max(int(widths.max(initial=0)), 1)
    typical = typical_batch_sizes(rows, batch_size)
    typical = (min(typical[0], distinct), min(typical[1], padded))
    return cls(rows.shape[1], batch_size, (distinct, None),
               None if typical == (distinct, padded) else typical)

  def fits_typical(self, indices):
    """Whether a batch's indices [batch, width] fit the typical sizes (a bool)."""
    if self.typical is None:
      return jnp.zeros((), bool)
    return jnp.logical_and(batch_distinct(indices, self.dims) <= self.typical[0],
                           (indices < self.dims).sum() <= self.typical[1])

  def with_rows(self, x: SparseRows, sizes):
    """(rows [size] the batch reads, as_input(kernel_rows) -> the batch reading
    those rows). sizes = (row slots, entry slots or None for padded rows)."""
    row_slots, entry_slots = sizes
    if entry_slots is None:
      rows, local = batch_rows(x.indices, self.dims, row_slots)
      return rows, lambda kernel_rows: SparseRows(local, x.values, kernel_rows)
    cols, values, items = batch_entries(x.indices, x.values, self.dims, entry_slots)
    rows, local = batch_rows(cols, self.dims, row_slots)
    return rows, lambda kernel_rows: SparseEntries(local, values, items, kernel_rows,
                                                   self.batch_size)

  def by_size(self, fits, update, params, opt_state):
    """update(sizes, params, opt_state) -> (params, opt_state, *rest) with the
    typical sizes where `fits`, else the worst-case ones: each a `run_if`, so
    the parameters and moments are updated in place."""
    if self.typical is None:
      return update(self.worst, params, opt_state)
    sized = lambda sizes: lambda carry: update(sizes, carry[0], carry[1])
    rest = jax.eval_shape(sized(self.typical), (params, opt_state))[2:]
    carry = (params, opt_state) + tuple(
        jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), rest))
    carry = run_if(fits, sized(self.typical), carry)
    return run_if(jnp.logical_not(fits), sized(self.worst), carry)
