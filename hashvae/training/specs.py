"""The typed records the training layer takes, in place of the experiment config.

hashvae.sweep.specs builds them from a config; Python users can build them
directly. Each says in its fields what a training function depends on.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "default")


def _need(ok: bool, record: str, field: str, value, allowed: str):
  if not ok:
    raise ValueError(f"{record}.{field}={value!r}: {allowed}")


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
  """What shapes one run: code length, network, optimiser, schedule, and the
  labelled-fraction protocol's mask. Every field is static: changing one
  compiles a new program (the traced per-run values live in the grid)."""

  bits: int  # code length K
  epochs: int = 30
  batch_size: int = 100
  eval_batch_size: int = 1000  # items encoded at once at evaluation
  hidden: tuple = (500, 500)  # encoder widths
  batch_norm: bool = True  # after each encoder layer
  sparse_input: str = "auto"  # "auto", "sparse" or "dense" (core.sparse)
  optimizer: str = "exact"  # a name of core.optim.OPTIMISERS
  # Label mask: False draws floor(p * N) over train + validation together;
  # True draws floor(p * N_s) in each split separately, as released.
  mask_per_split: bool = False
  # One mask for every seed when set (the released protocol); unset, each
  # (seed, level) run draws its own mask from its key.
  shared_mask_seed: Optional[int] = None
  # jax.default_matmul_precision while the run's pieces are traced: one of
  # PRECISIONS ("float32": full float32 on every platform).
  precision: str = "float32"

  def __post_init__(self):
    for field in ("bits", "epochs", "batch_size", "eval_batch_size"):
      value = getattr(self, field)
      _need(isinstance(value, int) and value >= 1, "TrainerSpec", field, value,
            "an integer >= 1")
    _need(all(w >= 1 for w in self.hidden), "TrainerSpec", "hidden", self.hidden,
          "widths >= 1")
    _need(self.sparse_input in ("auto", "sparse", "dense"), "TrainerSpec", "sparse_input",
          self.sparse_input, "'auto', 'sparse' or 'dense'")
    _need(self.precision in PRECISIONS, "TrainerSpec", "precision", self.precision,
          f"one of {PRECISIONS}")




@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a grid's runs go: over how many devices, and in chunks of how many
  runs (the stacked train state per device within the budget, and on CPU
  devices at most `cpu_runs_per_chunk` runs a device; 0: no cap). A budget
  of 0 is taken from the device (training.chunking.state_budget)."""

  devices: int = 0  # 0: every visible device
  state_memory_budget_mb: float = 0.0
  cpu_runs_per_chunk: int = 5

  def __post_init__(self):
    _need(self.devices >= 0, "Placement", "devices", self.devices, "a count >= 0 (0: all)")
    _need(self.state_memory_budget_mb >= 0, "Placement", "state_memory_budget_mb",
          self.state_memory_budget_mb, "MB >= 0 (0: from the device)")
    _need(self.cpu_runs_per_chunk >= 0, "Placement", "cpu_runs_per_chunk",
          self.cpu_runs_per_chunk, "an integer >= 0 (0: no cap)")


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
  """How often a grid's stacked state is saved (epochs; 0: only at the end)
  and how many checkpoints are kept."""

  every: int = 5
  keep: int = 2
