"""What a step reads of document neighbours (methods.Neighbours): the table
checked, each step's draws, and the network's outputs on them split off.

The training arrays carry the table, arrays["neighbours"] [items, k] int32:
each training item's k neighbours among the training items (train then
validation, as the arrays order them), most similar first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hashvae import methods


def draw_neighbours(table, loop_key, step, idx, draws: int = 1):
  """Each item's neighbours for one step, drawn uniformly with the step's own
  key (fold_in(loop_key, 2) folded with the step; the shuffle folds 0, the
  noise 1): one of its k, or `draws` distinct ones in ascending table order.

  table [items, k], idx [batch] -> (item positions, table columns), each
  [batch], or [batch, draws] when draws > 1.
  """
  key = jax.random.fold_in(jax.random.fold_in(loop_key, 2), step)
  k = table.shape[1]
  if draws == 1:
    columns = jax.random.randint(key, idx.shape, 0, k)
    return table[idx, columns], columns
  columns = jnp.sort(jnp.argsort(jax.random.uniform(key, idx.shape + (k,)), -1)
                     [..., :draws], -1)
  return table[idx[..., None], columns], columns


def with_neighbour_outputs(out: dict, batch_size: int, draws: int = 1) -> dict:
  """The outputs of a pass over the batch and its neighbours stacked
  [(1 + draws) batch] -> the batch's [batch] rows, with out["neighbour"] the
  neighbours' ([batch, ...], or [draws, batch, ...] when draws > 1).
  Outputs that are not per row (a scalar temperature) go to both as they are."""
  rows = (1 + draws) * batch_size
  per_row = lambda f: lambda a: f(a) if a.ndim and a.shape[0] == rows else a
  head = jax.tree.map(per_row(lambda a: a[:batch_size]), out)
  shape = (draws, batch_size) if draws > 1 else (batch_size,)
  return dict(head, neighbour=jax.tree.map(
      per_row(lambda a: a[batch_size:].reshape(shape + a.shape[1:])), out))


def checked_neighbours(method: methods.Method, neighbours, items: int):
  """The method's neighbour table as int32 [items, k], or None for a method
  that reads none; a one-line MethodError when it is missing or wrong."""
  need = method.neighbours
  if need is None:
    if neighbours is not None:
      raise methods.MethodError(f"method {method.name!r} declares no neighbours; "
                                "pass neighbours=None")
    return None
  if neighbours is None:
    raise methods.MethodError(
        f"method {method.name!r} learns from document neighbours: pass its table "
        f"neighbours [{items}, {need.k}] (hashvae.sweep.specs.make_run computes it)")
  table = np.asarray(neighbours)
  if (table.shape != (items, need.k) or not np.issubdtype(table.dtype, np.integer)
      or table.min() < 0 or table.max() >= items):
    raise methods.MethodError(
        f"method {method.name!r}: neighbours must be integers in [0, {items}) of "
        f"shape ({items}, {need.k}), got {table.dtype} {table.shape}")
  return table.astype(np.int32)
