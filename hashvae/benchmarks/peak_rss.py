"""Peak resident memory of training one run for one epoch, in a fresh process.

    python -m hashvae.benchmarks.peak_rss DATA_PATH {dense,sparse}

prints one JSON line (`training_peak_rss`). A fresh process, so that what an
earlier benchmark allocated neither counts nor hides this one's peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUTS = ("dense", "sparse")
MODULE = "hashvae.benchmarks.peak_rss"


def resident_bytes() -> dict:
  """{"now", "peak"}: this process's resident memory (Linux /proc)."""
  fields = {}
  with open("/proc/self/status", encoding="ascii") as f:
    for line in f:
      name, _, value = line.partition(":")
      if name in ("VmRSS", "VmHWM"):
        fields[name] = int(value.split()[0]) * 1024  # kB
  return dict(now=fields["VmRSS"], peak=fields["VmHWM"])


def training_peak_rss(data_path: str, inputs: str) -> dict:
  """In this process: load Snippets, reset the peak resident memory to the
  current one (Linux: /proc/self/clear_refs), then build, compile and train
  one run for one epoch on the `inputs` path ("dense" or "sparse", exact
  Adam). Returns bytes: resident after loading, and the peak above that.
  Loading's own transient peak (vectorising the corpus) is left out: it is
  the same for both paths and larger than either."""
  from hashvae.benchmarks import common
  from hashvae.sweep import specs

  config, dataset = common.load_snippets(data_path)
  with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
    f.write("5")
  loaded = resident_bytes()["now"]
  run = specs.make_run(common.with_modes(config, inputs, "exact"), dataset)
  common.Program(run.train_epoch, run.arrays,
                 common.init_one(run, common.first_runs(config, 1), 0))()
  return dict(loaded=loaded, above_loaded=resident_bytes()["peak"] - loaded)


def in_fresh_process(data_path: str, inputs: str) -> dict:
  """training_peak_rss in a child process, or {"unavailable": reason}."""
  done = subprocess.run([sys.executable, "-m", MODULE, data_path, inputs],
                        cwd=ROOT, capture_output=True, text=True)
  if done.returncode != 0:  # e.g. no /proc (not Linux)
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    return dict(unavailable=lines[-1][:200])
  return json.loads(done.stdout.splitlines()[-1])


def main(argv):
  if len(argv) != 2 or argv[1] not in INPUTS:
    sys.exit(f"usage: python -m {MODULE} DATA_PATH {{{','.join(INPUTS)}}}")
  print(json.dumps(training_peak_rss(*argv)), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
