"""Progress of a long pass inside a compiled program, logged from the host.

A program that streams over blocks (encoding every item of a large corpus)
calls `report(name, block, blocks)` once per block; a debug callback hands
the block number to the host, which logs the share done, the elapsed time
and an ETA, at most every LOG_EVERY_S seconds, so short passes log nothing.
Under vmap the callback may see every run's block number at once, and on
several devices each device reports: the host keeps the furthest block.
"""

from __future__ import annotations

import functools
import logging
import time

import jax
import numpy as np

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0

# name -> [start time, last log time, furthest block seen]
_passes: dict = {}


def _seen(name: str, blocks: int, block):
  now, block = time.perf_counter(), int(np.max(block))
  state = _passes.get(name)
  if state is None or block < state[2]:  # a new pass (or a new chunk of runs)
    state = _passes[name] = [now, now, block]
  state[2] = max(state[2], block)
  done = state[2] + 1
  if now - state[1] >= LOG_EVERY_S and done < blocks:
    state[1], elapsed = now, now - state[0]
    log.info("%s: block %d/%d (%.0f%%), elapsed %.0fs, ETA %.0fs", name, done, blocks,
             100 * done / blocks, elapsed, elapsed / done * (blocks - done))
  if done == blocks:
    _passes.pop(name, None)


def report(name: str, block, blocks: int):
  """Inside a traced function: block `block` (a traced int) of `blocks` of
  the pass `name` is done."""
  jax.debug.callback(functools.partial(_seen, name, blocks), block)
