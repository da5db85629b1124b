"""Saving and restoring a sweep's stacked train state with orbax-checkpoint.

One folder per chunk program of a method (experiment.checkpoint_layout);
orbax keeps the last `keep` epochs and writes each checkpoint to a
temporary folder first, so a crash mid-save never leaves a checkpoint that
looks complete. Typed PRNG keys are stored as their raw key data and
wrapped back on restore.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _unkey(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rekey(tree, like):
  return jax.tree.map(
      lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
      if _is_key(ref) else x, tree, like)


class Checkpoints:
  """A folder of epoch-numbered checkpoints of (state pytree, JSON history)."""

  def __init__(self, directory: str, every: int, keep: int = 2):
    self.every = every
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False),
        item_names=("state", "history"))

  def latest_epoch(self) -> Optional[int]:
    return self.manager.latest_step()

  def due(self, epoch: int, epochs: int) -> bool:
    """Whether to save after `epoch` (1-based): every N epochs and at the end."""
    return epoch == epochs or (self.every > 0 and epoch % self.every == 0)

  def save(self, epoch: int, state: Any, history: list):
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_unkey(state)),
        history=ocp.args.JsonSave(history)))
    self.manager.wait_until_finished()

  def restore(self, epoch: int, like: Any) -> tuple[Any, list]:
    """The state at `epoch`, shaped like the pytree `like`, and its history."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, "sharding", None)),
        _unkey(like))
    restored = self.manager.restore(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    return _rekey(restored.state, like), restored.history

  def close(self):
    self.manager.close()


def history_to_json(metrics: dict) -> dict:
  """{term: [runs] array} -> {term: [runs] list of floats} (NaN kept as None)."""
  return {k: [None if not np.isfinite(v) else float(v) for v in np.asarray(a)]
          for k, a in metrics.items()}


def history_from_json(metrics: dict) -> dict:
  return {k: np.array([np.nan if v is None else v for v in a], np.float32)
          for k, a in metrics.items()}
