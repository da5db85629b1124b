"""The run axis split over devices (simulated CPU devices) and processes."""

import csv
import json
import os
import socket
import subprocess
import sys

import pytest

from hashvae.core import sharding

from conftest import ROOT


def env_with_devices(n):
  return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
              JAX_PLATFORMS="cpu")


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_four_devices_equal_one_device_run_by_run():
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "scripts",
                                                      "sharded_vs_single.py"), ROOT],
                        env=env_with_devices(4), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert got["devices"] == 4 and got["mesh"] == 4
  assert got["runs"] == 6  # the 2 padding runs are dropped
  assert got["codes_equal"]
  assert got["loss_max_rel_diff"] < 1e-5
  assert got["traces"] == 1  # one compiled epoch step for every epoch
  assert got["runs_per_device"] == [2]


SPLIT_CPU = """
import os, sys
import jax
from hashvae.core import sharding
if len(sys.argv) > 2:  # pretend the process may run on that many CPUs
  os.sched_getaffinity = lambda pid: set(range(int(sys.argv[2])))
try:
  sharding.split_cpu(int(sys.argv[1]))
except ValueError as e:
  print("ValueError:", e)
  sys.exit(0)
print(jax.device_count(), jax.devices()[0].platform, len(os.sched_getaffinity(0)))
"""

# The entry points' flag: several processes keep one CPU device each unless
# --cpu_devices is given.
CPU_DEVICES_FLAG = """
import sys
import jax
from absl import flags
from launch import cpu_devices
flags.FLAGS(["prog", *sys.argv[1:]])
cpu_devices.apply(several_processes=True)
print(jax.device_count())
"""


def run_script(script, *args, env):
  proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout.split()


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_split_cpu_sets_the_device_count_and_respects_the_environment():
  plain = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  plain["JAX_PLATFORMS"] = "cpu"
  assert run_script(SPLIT_CPU, 3, env=plain)[:2] == ["3", "cpu"]
  devices, _, cores = run_script(SPLIT_CPU, 0, env=plain)
  # One per CPU this process may run on (2 in CI), at most the default cap.
  assert int(devices) == min(int(cores), sharding.MAX_DEFAULT_CPU_DEVICES)
  assert run_script(SPLIT_CPU, 0, 20, env=plain)[0] == str(
      sharding.MAX_DEFAULT_CPU_DEVICES)
  assert run_script(SPLIT_CPU, 0, env=env_with_devices(4))[0] == "4"  # XLA_FLAGS decides
  assert run_script(SPLIT_CPU, 0, env=dict(plain, JAX_NUM_CPU_DEVICES="3"))[0] == "3"
  assert run_script(SPLIT_CPU, 1, env=env_with_devices(4))[0] == "1"  # an explicit count wins
  assert "cpu_devices=-1" in " ".join(run_script(SPLIT_CPU, -1, env=plain))
  assert run_script(CPU_DEVICES_FLAG, env=plain) == ["1"]
  assert run_script(CPU_DEVICES_FLAG, "--cpu_devices=3", env=plain) == ["3"]


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def read(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_write_the_single_process_results(tmp_path):
  args = [sys.executable, "-m", "launch.main",
          "--config=configs/synthetic.py:method=phs_gs+ssb_vae", "--config.seeds=(0,1,2)"]
  port = free_port()
  procs = [subprocess.Popen(args + [f"--workdir={tmp_path / 'multi'}",
                                    f"--coordinator_address=localhost:{port}",
                                    "--num_processes=2", f"--process_id={i}"],
                            cwd=ROOT, env=env_with_devices(2), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs, strict=True):
    assert p.returncode == 0, err[-3000:]
  assert "process 0 wrote" in outputs[0][1]
  assert "process 1: done; process 0 writes the results" in outputs[1][1]
  single = subprocess.run(args + [f"--workdir={tmp_path / 'single'}"], cwd=ROOT,
                          env=env_with_devices(1), capture_output=True, text=True,
                          timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  multi_rows = read(tmp_path / "multi" / "results.csv")
  assert len(multi_rows) == 12
  assert multi_rows == read(tmp_path / "single" / "results.csv")
