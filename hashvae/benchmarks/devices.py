"""The run axis over 1, 2 and 4 simulated CPU devices (or the real devices).

    python -m launch.benchmark --sections=devices

Each device count runs in a process of its own (XLA_FLAGS must be set before
jax starts: `python -m hashvae.benchmarks.devices EPOCHS` is that process,
`measure`): the same digits grid (ssb_vae, 16 runs), timed over epochs 2..n
(compilation excluded). Reported: runs x epochs per second, the per-device
memory of the compiled epoch step (arguments = the runs' state held by one
device, plus temporaries), from XLA's memory analysis, and how far the
results are from the 1-device run (final loss per run; code bits of the
first 200 items): different per-device batch shapes change the order of
float sums, so codes may differ in a few bits after several epochs, never
in substance. The figures to check are the results and the state memory
per device falling as 1/devices; what splitting a CPU into devices does to
speed is measured by the train section's "chunked" contender, which runs as
the sweep does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = "hashvae.benchmarks.devices"
CODE_ITEMS = 200  # database items whose codes are compared across device counts


def measure(epochs: int) -> dict:
  """Trains the digits grid for `epochs` epochs over every device of this
  process; its speed, memory per device, final losses and first codes."""
  import jax

  from configs import digits
  from hashvae import data
  from hashvae.core import sharding
  from hashvae.sweep import specs
  from hashvae.training import grid as grid_lib

  config = digits.get_config("method=ssb_vae")
  with config.unlocked():
    config.seeds, config.levels, config.epochs = tuple(range(8)), (0.1, 1.0), epochs
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  run = specs.make_run(config, dataset)
  grid = specs.build_grid(config, "ssb_vae")
  mesh = sharding.run_mesh(0)
  program = grid_lib.grid_program(run, 0, mesh)
  memory = program.epoch_step.lower(
      program.arrays, grid_lib.initial_state(program, grid), 0).compile().memory_analysis()
  times = []
  out = grid_lib.train_grid(run, grid, 0, lambda e, n, m, t: times.append(t),
                            program=program)
  per_epoch = (times[-1] - times[0]) / (len(times) - 1)
  return dict(
      devices=int(mesh.devices.size), runs=len(grid), backend=jax.default_backend(),
      runs_epochs_per_s=len(grid) / per_epoch,
      items_epochs_per_s=len(grid) * dataset.database_size / per_epoch,
      state_bytes_per_device=int(memory.argument_size_in_bytes),
      temp_bytes_per_device=int(memory.temp_size_in_bytes),
      final_loss=out.epoch_metrics["loss"][-1].tolist(),
      codes=out.db_codes[:, :CODE_ITEMS].astype(int).tolist())


def in_process_with(devices, epochs: int) -> dict:
  """`measure` in a child process over `devices` simulated CPU devices
  (None: the environment's devices)."""
  env = dict(os.environ)
  if devices is not None:
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  proc = subprocess.run([sys.executable, "-m", MODULE, str(epochs)], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=1200)
  if proc.returncode != 0:
    raise RuntimeError(f"{devices or 'the'} devices: {proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False):
  """Yields one "devices" figure per device count."""
  import jax
  import numpy as np

  epochs = 3 if quick else 6
  on_cpu = jax.default_backend() == "cpu"
  figures = [in_process_with(n if on_cpu else None, epochs)
             for n in ([1, 2, 4] if on_cpu else [jax.device_count()])]
  base = figures[0]
  base_loss, base_codes = np.array(base["final_loss"]), np.array(base["codes"])
  for f in figures:
    loss, codes = np.array(f.pop("final_loss")), np.array(f.pop("codes"))
    yield dict(figure="devices", **f,
               final_loss_max_rel_diff_vs_1_device=float(
                   np.max(np.abs(loss - base_loss) / np.abs(base_loss))),
               code_bits_differing_vs_1_device=float(np.mean(codes != base_codes)),
               throughput_vs_1_device=f["runs_epochs_per_s"] / base["runs_epochs_per_s"],
               state_memory_vs_1_device=f["state_bytes_per_device"]
               / base["state_bytes_per_device"])


def main(argv):
  if len(argv) != 1 or not argv[0].isdigit() or int(argv[0]) < 2:
    sys.exit(f"usage: python -m {MODULE} EPOCHS (at least 2: the first is compilation)")
  print(json.dumps(measure(int(argv[0]))), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
