"""The accelerator benchmark: its settings and synthetic codes, and the
section end to end at --quick sizes on the CPU (slow)."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from hashvae.benchmarks import accelerator

from conftest import ROOT

CPU_RUNS_PER_CHUNK = 5  # configs/base.py's cap a CPU device
DEVICES = 2  # --cpu_devices of the end-to-end run


@pytest.mark.parametrize("fields, words", [
    (dict(parts=("evaluate", "train")), "accel_parts"),
    (dict(parts=()), "accel_parts"),
    (dict(precision="half"), "accel_precision"),
    (dict(epochs=0), "accel_epochs"),
])
def test_settings_refuse_what_is_not_allowed(fields, words):
  with pytest.raises(accelerator.SettingsError, match=words):
    accelerator.Settings(**fields)


def test_clustered_codes_scatter_around_one_centre_per_class():
  query_codes, db_codes, query_labels, db_labels = accelerator.clustered_codes(
      300, 4000, bits=16, classes=4, seed=1)
  assert query_codes.shape == (300, 16) and db_codes.shape == (4000, 16)
  assert query_codes.dtype == db_codes.dtype == np.uint8
  assert set(np.unique(db_codes)) <= {0, 1} and set(np.unique(db_labels)) == {0, 1, 2, 3}
  # Each class's majority bit recovers its centre; about FLIP of the bits differ.
  for c in range(4):
    rows = db_codes[db_labels == c]
    centre = (rows.mean(axis=0) > 0.5).astype(np.uint8)
    assert abs(np.mean(rows != centre) - accelerator.FLIP) < 0.02
    assert np.mean(query_codes[query_labels == c] != centre) < 0.3


def test_peak_memory_on_a_cpu_is_the_resident_peak():
  peak = accelerator.peak_memory(accelerator.restart_peak_rss(), [])
  assert peak["peak_memory_bytes"] > 0
  assert "VmHWM" in peak["peak_memory_source"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
  cache = tmp_path_factory.mktemp("scale_cache")
  proc = subprocess.run([sys.executable, "-m", "launch.benchmark", "--sections=accelerator",
                         "--quick", f"--scale_cache={cache}", f"--cpu_devices={DEVICES}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(line) for line in proc.stdout.splitlines()]
  out = {line["figure"]: line for line in lines if line.get("section") == "accelerator"}
  assert len(out) == len(lines) - 1  # the machine line, then one figure a part
  return out


@pytest.mark.slow
def test_every_part_reports_device_precision_commit_and_memory(figures):
  assert set(figures) == {f"accelerator_{p}" for p in accelerator.PARTS}
  for f in figures.values():
    assert "failed" not in f and "skipped" not in f, f
    assert f["platform"] == "cpu" and f["devices"] == DEVICES and f["device_kind"]
    assert f["precision"] == "float32" and f["state_memory_budget_mb"] == 0
    assert f["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", f["commit"])
    assert f["wall_s"] >= f["steady_s"] > 0 and f["compile_s"] > 0
    assert f["runs_per_second"] > 0
    assert f["runs_per_second_per_device"] == pytest.approx(f["runs_per_second"] / DEVICES)
    assert f["peak_memory_bytes"] is None or f["peak_memory_bytes"] > 0
    assert "VmHWM" in f["peak_memory_source"]  # a CPU: the process's peak, named


@pytest.mark.slow
def test_training_parts_chunk_as_the_sweep_plans(figures):
  sweep, scale = figures["accelerator_sweep"], figures["accelerator_scale"]
  for f in (sweep, scale):
    size = f["runs_per_chunk"]
    assert f["grid_runs"] == 50  # 5 seeds x 10 released levels
    assert size == min(CPU_RUNS_PER_CHUNK * DEVICES, f["grid_runs"])
    assert (f["chunks_in_grid"] - 1) * size < f["grid_runs"] <= f["chunks_in_grid"] * size
    assert "cpu_runs_per_chunk 5" in f["plan_why"]
    assert 0 < f["epoch_compile_s"] <= f["compile_s"]
    assert f["runs_per_second"] == pytest.approx(f["runs"] / f["epoch_s"])
    assert f["ms_per_run_step"] == pytest.approx(
        1e3 * f["epoch_s"] / (f["runs"] * f["steps_per_epoch"]))
    assert math.isfinite(f["mean_final_loss"])
  assert sweep["runs"] == sweep["grid_runs"] and sweep["chunks"] == sweep["chunks_in_grid"]
  assert sweep["steady_s"] == pytest.approx(sweep["epochs_timed"] * sweep["epoch_s"])
  assert sweep["projected_s"] == pytest.approx(
      sweep["load_s"] + sweep["wall_s"] - sweep["steady_s"] + 30 * sweep["epoch_s"])
  assert scale["chunks"] == 1 and scale["runs"] == scale["runs_per_chunk"]
  assert scale["train_items"] == accelerator.QUICK_SCALE_ITEMS


@pytest.mark.slow
def test_evaluate_part_times_the_second_call(figures):
  f = figures["accelerator_evaluate"]
  assert (f["queries"], f["items"]) == accelerator.QUICK_EVAL_SIZES
  assert f["first_call_s"] > f["steady_s"]  # the first call compiles
  assert f["runs_per_second"] == pytest.approx(1 / f["steady_s"])
  ks = len(f["ks"])  # p, r, map, tie-aware p and ndcg at each K; map@all, p@r2, its empties
  assert f["metrics"] == 5 * ks + 3
  assert f["p@100"] > 2 / f["classes"]  # clustered codes: far above chance


@pytest.mark.slow
def test_the_section_runs_alone():
  proc = subprocess.run([sys.executable, "-m", "launch.benchmark",
                         "--sections=eval,accelerator", "--quick"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "runs alone" in proc.stderr
