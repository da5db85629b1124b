"""launch.benchmark --quick end to end: every figure present, ratios the
right way round (a figure's ratio equals the ratio of its own timings), and
the derived figures (shares, the sweep's estimate, the roofline) computed
from the timings they name."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, shared_file

close = lambda a, b: a == pytest.approx(b, rel=1e-6)


@pytest.fixture(scope="module")
def figures():
  snippets = shared_file("snippets")  # skips with a reason when absent
  proc = subprocess.run([sys.executable, "-m", "launch.benchmark", "--sections=eval,train",
                         "--quick", f"--data_path={snippets}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=1800)
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
               "exact_vs_fast_time", "roofline", "sweep_estimate",
               "exact_vs_fast_precision"):
    assert name in figures, name
  assert {f["dataset"] for f in figures["vmap_vs_sequential"]} == {"digits", "snippets"}
  assert {f["runs"] for f in figures["vmap_vs_sequential"]} == {1, 4}  # --quick
  assert {f["mode"] for f in figures["roofline"]} == {"dense", "sparse", "fast"}
  assert "skipped" in figures["exact_vs_fast_precision"][0]  # without --full
  assert {f["section"] for f in figures["step_breakdown"]} == {"train"}


@pytest.mark.slow
def test_ratios_are_baseline_over_ours(figures):
  for f in figures["vmap_vs_sequential"]:
    assert close(f["vmapped_over_sequential"],
                 f["ms_per_run_step_sequential"] / f["ms_per_run_step_vmapped"])
    if "chunked_over_sequential" in f:
      assert close(f["chunked_over_sequential"],
                   f["ms_per_run_step_sequential"] / f["ms_per_run_step_chunked"])
  (path,) = figures["input_path"]
  assert close(path["dense_over_sparse_time"],
               path["ms_per_step_dense"] / path["ms_per_step_sparse"])
  # Both paths keep the corpus as CSR on the device (the dense one densifies
  # a batch at a time), so neither holds more input than the other.
  assert path["input_bytes_dense"] == path["input_bytes_sparse"] > 0
  rss = path["peak_rss"]
  assert rss["dense"]["above_loaded"] > 0 and rss["sparse"]["above_loaded"] > 0
  assert close(rss["dense_over_sparse"],
               rss["dense"]["above_loaded"] / rss["sparse"]["above_loaded"])
  (fast,) = figures["exact_vs_fast_time"]
  assert close(fast["exact_over_fast_time"],
               fast["ms_per_step_exact"] / fast["ms_per_step_fast"])
  assert close(fast["ms_per_step_exact"], path["ms_per_step_sparse"])
  for f in figures["evaluate_vs_numpy"]:
    assert f["speedup"] == pytest.approx(f["numpy_s"] / f["evaluate_s"], rel=0.05)
    assert f["max_abs_diff"] < 1e-6


@pytest.mark.slow
def test_step_breakdown_shares_come_from_its_variants(figures):
  (f,) = figures["step_breakdown"]
  ms = f["ms_per_run_step"]
  assert set(ms) == {"full", "no_adam", "no_reconstruction", "neither"}
  assert all(v > 0 for v in ms.values())
  assert close(f["adam_share"], 1 - ms["no_adam"] / ms["full"])
  assert close(f["reconstruction_share"], 1 - ms["no_reconstruction"] / ms["full"])
  assert close(f["rest_share"], ms["neither"] / ms["full"])
  assert f["runs"] == 4 and f["training_items"] == 500  # --quick


@pytest.mark.slow
def test_sweep_estimate_and_roofline_use_the_measured_steps(figures):
  (sweep,) = figures["sweep_estimate"]
  snippets = {f["runs"]: f for f in figures["vmap_vs_sequential"]
              if f["dataset"] == "snippets"}
  most = snippets[max(snippets)]
  contender = sweep["from_contender"]
  kind = contender.rsplit("_", 1)[0]
  assert contender == f"{kind}_{most['runs']}"
  assert close(sweep["per_run_step_ms"][contender], most[f"ms_per_run_step_{kind}"])
  steps = sweep["runs"] * sweep["epochs"] * sweep["steps"]
  assert close(sweep["exact_minutes"], steps * sweep["per_run_step_ms"][contender] / 6e4)
  (fast,) = figures["exact_vs_fast_time"]
  assert close(sweep["fast_minutes"], sweep["exact_minutes"] / fast["exact_over_fast_time"])
  (path,) = figures["input_path"]
  ms = dict(dense=path["ms_per_step_dense"], sparse=path["ms_per_step_sparse"],
            fast=fast["ms_per_step_fast"])
  (peaks,) = figures["machine_peaks"]
  for f in figures["roofline"]:
    assert close(f["ms_per_step"], ms[f["mode"]])
    assert close(f["fraction_of_matmul_peak"], f["model_flops_per_step"]
                 / (f["ms_per_step"] / 1e3) / peaks["matmul_flops_per_s"])
  # The sparse step reads a few entry slots an item, not every input column.
  by_mode = {f["mode"]: f for f in figures["roofline"]}
  assert by_mode["dense"]["model_flops_per_step"] > by_mode["sparse"]["model_flops_per_step"]


@pytest.mark.slow
def test_the_devices_child_is_a_module_that_uses_the_devices_it_is_given():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.run([sys.executable, "-m", "hashvae.benchmarks.devices", "2"], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  figure = json.loads(proc.stdout.splitlines()[-1])
  assert figure["devices"] == 2 and figure["runs"] == 16
  assert len(figure["final_loss"]) == 16 and len(figure["codes"]) == 16
  assert figure["runs_epochs_per_s"] > 0
