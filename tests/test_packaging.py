"""`pip install .` builds a package with the library, configs and entry points."""

import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_pip_install_builds_the_package(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                         "--target", str(tmp_path), ROOT], capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for path in ("hashvae/retrieval/metrics.py", "hashvae/data/text.py", "launch/main.py",
               "configs/released_hyperparameters.csv", "bin/hashvae-train",
               "bin/hashvae-search"):
    assert (tmp_path / path).exists(), path
  entry = (tmp_path / "bin" / "hashvae-train").read_text()
  assert "launch.main" in entry and "cli" in entry
