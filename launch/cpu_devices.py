"""The --cpu_devices flag of the entry points that train: how many jax
devices this process's CPU is split into (sharding.split_cpu)."""

from absl import flags

from hashvae import sharding

CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "jax devices to split the CPU into, each running its "
    "share of a chunk's runs concurrently (0: one per core; 1: jax's "
    "default single CPU device). No effect on accelerators.", lower_bound=0)


def apply():
  """Applies --cpu_devices; call before jax's first computation."""
  return sharding.split_cpu(CPU_DEVICES.value)
