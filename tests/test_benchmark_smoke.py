"""launch.benchmark --quick end to end: every figure present, ratios the
right way round (a figure's ratio equals the ratio of its own timings)."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file


@pytest.fixture(scope="module")
def figures():
  snippets = shared_file("snippets")  # skips with a reason when absent
  proc = subprocess.run([sys.executable, "-m", "launch.benchmark", "--sections=eval,train",
                         "--quick", f"--data_path={snippets}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = [json.loads(line) for line in proc.stdout.splitlines()]
  out = {}
  for line in lines:
    out.setdefault(line["figure"], []).append(line)
  return out


@pytest.mark.slow
def test_every_figure_is_reported(figures):
  for name in ("machine", "evaluate_vs_numpy", "top_k_vs_faiss", "machine_peaks",
               "vmap_vs_sequential", "step_breakdown", "input_path",
               "exact_vs_fast_time", "roofline", "sweep_estimate"):
    assert name in figures, name
  assert {f["dataset"] for f in figures["vmap_vs_sequential"]} == {"digits", "snippets"}


@pytest.mark.slow
def test_ratios_are_baseline_over_ours(figures):
  close = lambda a, b: a == pytest.approx(b, rel=1e-6)
  for f in figures["vmap_vs_sequential"]:
    assert close(f["vmapped_over_sequential"],
                 f["ms_per_run_step_sequential"] / f["ms_per_run_step_vmapped"])
    if "chunked_over_sequential" in f:
      assert close(f["chunked_over_sequential"],
                   f["ms_per_run_step_sequential"] / f["ms_per_run_step_chunked"])
  (path,) = figures["input_path"]
  assert close(path["dense_over_sparse_time"],
               path["ms_per_step_dense"] / path["ms_per_step_sparse"])
  rss = path["peak_rss"]
  assert rss["dense"]["above_loaded"] > rss["sparse"]["above_loaded"] > 0
  assert path["input_bytes_dense"] > 10 * path["input_bytes_sparse"]
  (fast,) = figures["exact_vs_fast_time"]
  assert close(fast["exact_over_fast_time"],
               fast["ms_per_step_exact"] / fast["ms_per_step_fast"])
  for f in figures["evaluate_vs_numpy"]:
    assert f["speedup"] == pytest.approx(f["numpy_s"] / f["evaluate_s"], rel=0.05)
    assert f["max_abs_diff"] < 1e-6
