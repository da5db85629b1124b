"""The sparse bag-of-words input path: whether a run takes it, and the
sizes of the row lists a training step reads (the row formats themselves
are in sparse_rows.py; their names are re-exported here).

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
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hashvae.core.sparse_rows import (
  CsrRows,
  SparseEntries,
  SparseRows,
  gather_rows,
  host_csr,
  padded_rows,
  row_widths,
  to_dense,
)

__all__ = ["AUTO_SPARSE_WIDTH", "INPUT_MODES", "RUNS_AXIS", "CsrRows", "SparseEntries",
           "SparseInput", "SparseRows", "batch_distinct", "batch_entries", "batch_rows",
           "columns_seen", "gather_rows", "host_csr", "in_every_run", "max_batch_rows",
           "padded_rows", "row_widths", "run_if", "split_widths", "to_dense",
           "typical_batch_sizes", "use_sparse_input"]

INPUT_MODES = ("auto", "sparse", "dense")  # config.model.sparse_input
# "auto" picks the sparse path when the padded width (the most nonzeros in
# any row) is under this fraction of the input width: the gather then reads
# at most a tenth of the kernel rows the dense matmul multiplies by.
AUTO_SPARSE_WIDTH = 0.1
RUNS_AXIS = "vmapped_runs"  # the axis name a grid vmaps its runs over


# --- host side ---------------------------------------------------------------


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
