"""Search and the index load no training code: an .npz and a network suffice."""

import subprocess
import sys

from conftest import ROOT

TRAINING = ("hashvae.train", "hashvae.grid", "hashvae.experiment", "hashvae.optim",
            "hashvae.api", "orbax", "optax")


def test_search_imports_no_training_module():
  proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "launch.search", "--help"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert "--query-id" in proc.stdout + proc.stderr, proc.stderr[-2000:]  # absl's help ran
  loaded = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}
  assert "hashvae.index" in loaded and "hashvae.encoder" in loaded  # the check can see
  assert not [m for m in loaded if m.split(".")[0] in TRAINING or m in TRAINING
              or any(m.startswith(t + ".") for t in TRAINING)]
