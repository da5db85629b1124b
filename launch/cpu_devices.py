"""The --cpu_devices flag of the entry points that train: how many jax
devices this process's CPU is split into (sharding.split_cpu)."""

from absl import flags

from hashvae.core import sharding

CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "jax devices to split the CPU into, each running its "
    "share of a chunk's runs concurrently (0: one per logical CPU, at most "
    f"{sharding.MAX_DEFAULT_CPU_DEVICES}; 1: jax's single CPU device). On a "
    "GPU or TPU host the CPU devices are made but not used.", lower_bound=0)


def apply(several_processes: bool = False):
  """Applies --cpu_devices; call before jax's first computation. With
  several processes (which may share a host, each taking every core) the
  default leaves jax's single CPU device; an explicit --cpu_devices holds."""
  if several_processes and not CPU_DEVICES.present:
    return None
  return sharding.split_cpu(CPU_DEVICES.value)
