"""Saving and restoring a sweep's stacked train state with orbax-checkpoint.

One folder per chunk program of a method (layout_folder);
orbax keeps the last `keep` epochs and writes each checkpoint to a
temporary folder first, so a crash mid-save never leaves a checkpoint that
looks complete. Typed PRNG keys are stored as their raw key data and
wrapped back on restore.

A checkpoint that cannot be read (a truncated file, a disk that filled up)
is moved aside by `restore_latest`, which then resumes from the one before;
only when none can be read does the sweep stop, saying to pass --restart.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("hashvae")

# Moved-aside checkpoints are renamed with this prefix: orbax only sees
# folders named by an epoch number, so it neither restores nor deletes them.
CORRUPT_PREFIX = "corrupt-"


class CheckpointError(ValueError):
  """Checkpoints exist, but none of them can be read."""


def is_key(x) -> bool:
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def unkey(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def rekey(tree, like):
  return jax.tree.map(
      lambda x, ref: jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref))
      if is_key(ref) else x, tree, like)


class Checkpoints:
  """A folder of epoch-numbered checkpoints of (state pytree, JSON history)."""

  def __init__(self, directory: str, every: int, keep: int = 2):
    self.every = every
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
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
        state=ocp.args.StandardSave(unkey(state)),
        history=ocp.args.JsonSave(history)))
    self.manager.wait_until_finished()

  def restore(self, epoch: int, like: Any) -> tuple[Any, list]:
    """The state at `epoch`, shaped like the pytree `like`, and its history."""
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype,
                                       sharding=getattr(x, "sharding", None)),
        unkey(like))
    restored = self.manager.restore(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))
    return rekey(restored.state, like), restored.history

  def restore_latest(self, like: Any) -> Optional[tuple[int, Any, list]]:
    """(epoch, state, history) of the newest checkpoint that can be read,
    shaped like `like`; None when there is no checkpoint.

    Newer checkpoints that cannot be read are moved aside (renamed
    `corrupt-<epoch>-<time>`, kept for inspection), each with a warning
    naming it. If none can be read, nothing is moved and CheckpointError
    says to pass --restart.
    """
    epochs = sorted(self.manager.all_steps(), reverse=True)
    if not epochs:
      return None
    failed = []
    for epoch in epochs:
      try:
        state, history = self.restore(epoch, like)
      # A damaged checkpoint fails in whichever reader meets the damage
      # (json, tensorstore, orbax's own checks), each with its own type.
      except Exception as e:  # noqa: BLE001
        failed.append((epoch, e))
        continue
      for bad, error in failed:
        moved = self._move_aside(bad)
        log.warning("the checkpoint after epoch %d cannot be read (%s: %s); moved it "
                    "to %s and resuming from the one after epoch %d", bad,
                    type(error).__name__, _first_line(error), moved, epoch)
      if failed:
        self.manager.reload()  # forget the moved epochs
      log.info("restored the checkpoint after epoch %d from %s", epoch, self.directory)
      return epoch, state, history
    shown = "; ".join(f"epoch {epoch}: {type(e).__name__}: {_first_line(e)}"
                      for epoch, e in failed)
    raise CheckpointError(
        f"{self.directory}: none of its {len(failed)} checkpoint(s) can be read "
        f"({shown}). Pass --restart to train this sweep again from the start "
        "(it discards the whole sweep), or move this folder away to train only "
        "this part again")

  def _move_aside(self, epoch: int) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = os.path.join(self.directory, f"{CORRUPT_PREFIX}{epoch}-{stamp}")
    suffix = 0
    while os.path.exists(target + (f".{suffix}" if suffix else "")):
      suffix += 1
    target += f".{suffix}" if suffix else ""
    os.rename(os.path.join(self.directory, str(epoch)), target)
    return target

  def close(self):
    self.manager.close()


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else ""


def history_to_json(metrics: dict) -> dict:
  """{term: [runs] array} -> {term: [runs] list of floats} (NaN kept as None)."""
  return {k: [None if not np.isfinite(v) else float(v) for v in np.asarray(a)]
          for k, a in metrics.items()}


def history_from_json(metrics: dict) -> dict:
  return {k: np.array([np.nan if v is None else v for v in a], np.float32)
          for k, a in metrics.items()}


def layout_folder(workdir: str, method: str, chunks: int, width: int) -> str:
  """The folder of a method's chunk checkpoints for this chunk layout.

  A checkpoint holds one chunk's padded program of `width` runs, so it can
  resume only the same layout: a rerun on another device count (e.g.
  --cpu_devices) trains anew, and says why, rather than restore it.
  """
  parent = os.path.join(workdir, "checkpoints", method)
  layout = f"{chunks}_chunks_of_{width}"
  others = sorted(set(os.listdir(parent)) - {layout}) if os.path.isdir(parent) else []
  layouts = [o for o in others if re.fullmatch(r"\d+_chunks_of_\d+", o)]
  if layouts:
    log.warning("%s: checkpoints of another chunk layout (%s) are not used: "
                "this run's layout is %s", method, ", ".join(layouts), layout)
  if len(layouts) < len(others):
    log.warning("%s: checkpoints from an earlier version's folder layout in %s "
                "are not used", method, parent)
  return os.path.join(parent, layout)
