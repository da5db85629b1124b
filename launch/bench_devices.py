"""The run axis over 1, 2 and 4 simulated CPU devices (or the real devices).

Each device count runs in a process of its own (XLA_FLAGS must be set before
jax starts): the same digits grid (ssb_vae, 16 runs), timed over epochs 2..n
(compilation excluded). Reported: runs x epochs per second, whether the codes
equal the 1-device codes, and the per-device memory of the compiled epoch
step (arguments = the runs' state held by one device, plus temporaries), from
XLA's memory analysis, and how far the results are from the 1-device run
(final loss per run; code bits of the first 200 items): different per-device
batch shapes change the order of float sums, so codes may differ in a few
bits after several epochs, never in substance. The figures to check are
the results and the state memory per device falling as 1/devices; what
splitting a CPU into devices does to speed is measured by the train
section's "chunked" contender, which runs as the sweep does.
"""

import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys
import jax, jax.numpy as jnp
sys.path.insert(0, sys.argv[1])
from configs import digits
from hashvae import data, grid as grid_lib, sharding
from hashvae.train import make_run
config = digits.get_config("method=ssb_vae")
with config.unlocked():
  config.seeds = tuple(range(8)); config.levels = (0.1, 1.0); config.epochs = int(sys.argv[2])
dataset = data.load(config.data)
run = make_run(config, dataset)
grid = grid_lib.build_grid(config, "ssb_vae")
mesh = sharding.run_mesh(0)
functions = grid_lib.grid_functions(run, 0, mesh)
program = grid_lib.grid_program(run, grid, 0, functions=functions)
memory = program.epoch_step.lower(program.arrays, program.state, 0).compile().memory_analysis()
times = []
out = grid_lib.train_grid(run, grid, 0, lambda e, n, m, t: times.append(t), functions=functions)
per_epoch = (times[-1] - times[0]) / (len(times) - 1)
print(json.dumps(dict(
    devices=int(mesh.devices.size), runs=len(grid), backend=jax.default_backend(),
    runs_epochs_per_s=len(grid) / per_epoch,
    items_epochs_per_s=len(grid) * len(dataset.database) / per_epoch,
    state_bytes_per_device=int(memory.argument_size_in_bytes),
    temp_bytes_per_device=int(memory.temp_size_in_bytes),
    final_loss=out.epoch_metrics["loss"][-1].tolist(),
    codes=out.db_codes[:, :200].astype(int).tolist())))
"""


def run(flags):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  epochs = 3 if flags.quick else 6
  import jax
  counts = [1, 2, 4] if jax.default_backend() == "cpu" else [jax.device_count()]
  figures = []
  for n in counts:
    env = dict(os.environ)
    if jax.default_backend() == "cpu":
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    proc = subprocess.run([sys.executable, "-c", CHILD, root, str(epochs)], env=env,
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
      raise RuntimeError(f"{n} devices: {proc.stderr[-2000:]}")
    figures.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  import numpy as np
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
