"""How many runs of a grid one compiled program stacks: the train state each
device may hold (from the config, or from the memory the device reports),
less the data every device holds a copy of, and a cap per CPU device.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import jax
import jax.numpy as jnp

from hashvae.training.specs import Placement
from hashvae.training.train import Run, run_key

log = logging.getLogger("hashvae")

# Of a GPU's or TPU's reported memory, what the stacked train state and the
# data may take: the rest is left to the step's temporaries (activations,
# gradients, the optimiser's update) and to XLA's own buffers.
DEVICE_MEMORY_FRACTION = 0.5
CPU_BUDGET_MB = 2048  # a device that reports no memory size (a CPU)


def state_bytes_per_run(run: Run, base_seed: int) -> int:
  """Bytes of one run's train state (parameters, Adam moments, batch-norm
  statistics, mask, ...), from shapes alone."""
  hp = {k: jnp.float32(1.0) for k in run.weights}
  shapes = jax.eval_shape(run.init, run.arrays, run_key(base_seed, 0), jnp.float32(1.0), hp)
  return sum(x.size * getattr(x.dtype, "itemsize", 8) for x in jax.tree.leaves(shapes))


def runs_per_chunk(runs: int, bytes_per_run: int, budget_bytes: int, devices: int,
                   cap_per_device: int = 0) -> int:
  """How many runs one program stacks so that each device holds at most
  `budget_bytes` of train state and, with `cap_per_device` > 0, at most
  that many runs (a multiple of `devices`, at least one per device, unless
  it is all the runs: the program pads those to a multiple). The chunks are
  balanced (50 runs that fit 31 at a time run as 2 x 25, not 31 + 19), so
  that every chunk has one shape: one compile."""
  per_device = max(1, budget_bytes // max(bytes_per_run, 1))
  if cap_per_device > 0:
    per_device = min(per_device, cap_per_device)
  most = min(runs, per_device * devices)
  chunks = -(-runs // most)
  balanced = -(-runs // chunks)
  return min(most, -(-balanced // devices) * devices)


def data_bytes(arrays) -> int:
  """Bytes of a run's device arrays (CSR data counts its nonzeros): every
  device holds a copy."""
  return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(arrays))


def device_memory_bytes(device) -> Optional[int]:
  """The memory the backend reports for `device` (memory_stats' bytes_limit),
  or None where it reports none (a CPU device)."""
  try:
    stats = device.memory_stats()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  limit = (stats or {}).get("bytes_limit")
  return int(limit) if limit else None


def state_budget(budget_mb: float, device_bytes: Optional[int]) -> tuple[int, str]:
  """(bytes of train state one device may hold, data included, and why):
  an explicit `budget_mb` > 0 wins; else DEVICE_MEMORY_FRACTION of the
  device's reported memory; else (a CPU device) CPU_BUDGET_MB."""
  if budget_mb > 0:
    return int(budget_mb * 2**20), f"state_memory_budget_mb={budget_mb:g} as set"
  if device_bytes:
    return (int(device_bytes * DEVICE_MEMORY_FRACTION),
            f"{DEVICE_MEMORY_FRACTION:.0%} of the {device_bytes / 2**30:.1f} GB the device "
            "reports (state_memory_budget_mb=0)")
  return CPU_BUDGET_MB * 2**20, (f"{CPU_BUDGET_MB} MB, the budget of a device that "
                                 "reports no memory size (a CPU)")


@dataclasses.dataclass(frozen=True)
class Plan:
  runs_per_chunk: int
  why: str  # the budget, where it came from, and what the data takes


def plan(placement: Placement, run: Run, runs: int, mesh: jax.sharding.Mesh,
         base_seed: int = 0) -> Plan:
  """How a grid of `runs` runs of `run` is chunked on `mesh`: the state
  budget per device (state_budget), less the data each device holds, and,
  on CPU devices only, cpu_runs_per_chunk."""
  # This process's own device: another process's reports no memory here.
  device = mesh.local_devices[0]
  on_cpu = device.platform == "cpu"
  budget, source = state_budget(placement.state_memory_budget_mb,
                                None if on_cpu else device_memory_bytes(device))
  data, per_run = data_bytes(run.arrays), state_bytes_per_run(run, base_seed)
  if budget - data < per_run:
    log.warning("the data takes %d MB and one run's state %d MB of the %d MB budget "
                "per device: training one run per device at a time",
                data >> 20, per_run >> 20, budget >> 20)
  cap = placement.cpu_runs_per_chunk if on_cpu else 0
  size = runs_per_chunk(runs, per_run, budget - data, mesh.devices.size, cap)
  why = (f"state budget {budget >> 20} MB per device ({source}), of which the data "
         f"takes {data >> 20} MB and one run {per_run >> 20} MB"
         + (f"; cpu_runs_per_chunk {cap}" if cap else ""))
  return Plan(size, why)


def chunk_size(placement: Placement, run: Run, runs: int, mesh: jax.sharding.Mesh,
               base_seed: int = 0) -> int:
  """plan(...).runs_per_chunk."""
  return plan(placement, run, runs, mesh, base_seed).runs_per_chunk
