"""The run axis over devices (and hosts): a one-axis mesh named "runs".

Per-run arrays are split along it, the dataset is replicated, and the run
count is padded to a multiple of the device count (padding rows repeat the
last run and are dropped from every output). With several processes
(`jax.distributed`), the mesh spans every process's devices and outputs are
gathered with `process_allgather` before they reach the host.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

# The most CPU devices split_cpu makes by default: each holds its own copy
# of the dataset's arrays, and only 2 have been measured (README).
MAX_DEFAULT_CPU_DEVICES = 8


def split_cpu(count: int = 0):
  """Presents this process's CPU to jax as `count` devices (0: one per
  logical CPU it may run on, at most MAX_DEFAULT_CPU_DEVICES), over which a
  grid's run axis is laid as over several accelerators: each device runs
  its share of a chunk's runs as its own program, and the programs run
  concurrently. On this project's 2-core machine the Snippets sweep ran
  1.14x faster on two devices than on one (README, Performance). With
  `count` 0, a device count already asked for (XLA_FLAGS'
  --xla_force_host_platform_device_count, or JAX_NUM_CPU_DEVICES) is left
  to decide. Call before jax's first computation. Returns the count set
  (None where the environment decides)."""
  if count < 0:
    raise ValueError(f"cpu_devices={count}: expected 0 (one per core) or more")
  if count == 0:
    if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
        or os.environ.get("JAX_NUM_CPU_DEVICES")):
      return None
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    count = min(cores, MAX_DEFAULT_CPU_DEVICES)
  jax.config.update("jax_num_cpu_devices", count)
  return count


def run_mesh(max_devices: int = 0) -> jax.sharding.Mesh:
  """A mesh over the first `max_devices` devices of every process (0 = all)."""
  devices = jax.devices()
  count = len(devices) if max_devices <= 0 else min(max_devices, len(devices))
  if jax.process_count() > 1 and count != len(devices):
    raise ValueError("with several processes every device takes part: leave "
                     f"config.devices at 0 (got {max_devices})")
  return jax.make_mesh((count,), ("runs",), axis_types=(AxisType.Auto,),
                       devices=devices[:count])


def runtime(max_devices: int = 0) -> dict:
  """What the runs' devices are: platform ("cpu", "gpu", "tpu"), device kind,
  device and process counts, and the jax version (recorded in config.json)."""
  device = run_mesh(max_devices).devices.flat[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              devices=int(run_mesh(max_devices).devices.size),
              processes=jax.process_count(), jax=jax.__version__)


def padded_size(runs: int, mesh) -> int:
  size = mesh.devices.size
  return -(-runs // size) * size


def pad_runs(x: np.ndarray, total: int) -> np.ndarray:
  """[runs, ...] -> [total, ...], repeating the last run."""
  x = np.asarray(x)
  extra = total - x.shape[0]
  return x if extra == 0 else np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])


def split_runs(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("runs"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def place(x, sharding: NamedSharding) -> jax.Array:
  """A global array from a host value that every process holds in full."""
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(tree):
  """Device pytree -> numpy pytree holding the global arrays, on every process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return jax.tree.map(lambda x: np.asarray(
      multihost_utils.process_allgather(x, tiled=True)), tree)


def is_primary() -> bool:
  """Whether this process writes the sweep's files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str):
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
