"""The entry point end to end on a tiny config, in a subprocess."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hashvae.store import results

from conftest import ROOT


def launch(*args):
  return subprocess.run([sys.executable, "-m", "launch.main", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


def test_main_writes_results_codes_and_config(tmp_path):
  workdir = tmp_path / "run"
  proc = launch("--config=configs/synthetic.py:method=phs_gs+ssb_vae",
                f"--workdir={workdir}", "--config.seeds=(0,1,2)",
                "--config.levels=(0.5,1.0)", "--cpu_devices=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 2 * 3 * 2
  assert list(rows[0])[:8] == ["dataset", "method", "bits", "seed", "level",
                               "alpha", "beta", "gamma"]
  for name in ("p@10", "r@10", "map@10", "p@10_tie_aware", "p@50", "map@50", "ndcg@10",
               "map@all", "p@r2"):
    values = [float(r[name]) for r in rows]
    assert all(0.0 <= v <= 1.0 for v in values)
  assert [r["method"] for r in rows] == ["phs_gs"] * 6 + ["ssb_vae"] * 6
  assert {(r["platform"], r["precision"]) for r in rows} == {("cpu", "float32")}
  with np.load(workdir / "codes.npz") as packed:  # 8 bits a byte on disk
    assert packed["db_codes"].shape == (12, 200, 1) and int(packed["code_bits"]) == 8
  codes = results.load_codes(str(workdir / "codes.npz"))
  assert codes["db_codes"].shape == (12, 200, 8)
  assert codes["query_codes"].shape == (12, 40, 8)
  assert codes["db_codes"].dtype == np.uint8 and codes["db_codes"].max() <= 1
  assert codes["db_codes"].any(axis=(0, 1)).all()  # every bit read back somewhere
  assert codes["db_labels"].shape == (200,)
  config = json.loads((workdir / "config.json").read_text())
  assert config["seeds"] == [0, 1, 2] and config["data"]["name"] == "synthetic"
  assert config["precision"] == "float32"
  assert config["runtime"]["platform"] == "cpu" and config["runtime"]["devices"] == 2
  assert config["runtime"]["precision"] == "float32"
  assert "ssb_vae" in proc.stdout and "+-" in proc.stdout  # the summary
  assert "epoch 3/3" in proc.stderr  # progress lines
  assert "6 runs in 1 chunk(s) of up to 6, over 2 cpu device(s)" in proc.stderr
  assert "2048 MB, the budget of a device that reports no memory size" in proc.stderr
  assert (workdir / "pr_radius.png").stat().st_size > 0


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_main_reports_bad_input_clearly(tmp_path):
  proc = launch("--config=configs/synthetic.py:method=nope",
                f"--workdir={tmp_path / 'a'}")
  assert proc.returncode != 0 and "unknown method 'nope'" in proc.stderr
  proc = launch("--config=configs/snippets.py", f"--workdir={tmp_path / 'b'}",
                f"--config.data.path={tmp_path}/missing")
  assert proc.returncode != 0 and "data folder not found" in proc.stderr
  proc = launch("--config=configs/synthetic.py", f"--workdir={tmp_path / 'c'}",
                "--config.levelz=(0.1,)")
  assert proc.returncode != 0 and "levelz" in proc.stderr
  proc = launch("--config=configs/synthetic.py", f"--workdir={tmp_path / 'd'}",
                "--cpu_devices=-1")
  assert proc.returncode != 0 and "--cpu_devices=-1" in proc.stderr
  # Nothing is written for a config or data that fails its checks.
  assert not any(os.path.exists(tmp_path / d / "config.json") for d in "abcd")


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_restart_with_a_bad_config_keeps_the_previous_sweep(tmp_path):
  first = launch("--config=configs/synthetic.py:method=ssb_vae",
                 f"--workdir={tmp_path}", "--config.levels=(1.0,)",
                 "--config.seeds=(0,)", "--config.epochs=1")
  assert first.returncode == 0, first.stderr[-3000:]
  before = {p: (tmp_path / p).read_bytes() for p in ("config.json", "results.csv")}
  for bad in ("--config.levels=(1.5,)", "--config.data.name=nope"):
    proc = launch("--config=configs/synthetic.py:method=ssb_vae",
                  f"--workdir={tmp_path}", "--restart", bad)
    assert proc.returncode != 0 and "ConfigError" in proc.stderr
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    assert (tmp_path / "methods" / "ssb_vae.npz").exists()


def test_a_misspelt_method_is_a_usage_error_naming_the_nearest(tmp_path):
  proc = launch("--config=configs/synthetic.py:method=ssb_vea", f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 2, proc.stderr[-2000:]  # the command line's mistake
  assert "unknown method 'ssb_vea' (did you mean 'ssb_vae'?)" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "w").exists()
