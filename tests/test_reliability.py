"""Resume after a kill, atomic writes, config drift, divergence, skipped methods."""

import csv
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import synthetic
from hashvae import data, experiment, results, workdir
from hashvae import grid as grid_lib
from hashvae.train import make_run

from conftest import ROOT

SLOW_SWEEP = ["--config=configs/synthetic.py:method=ssb_vae", "--config.epochs=30",
              "--config.checkpoint_every=2", "--config.data.train_size=3000",
              "--config.data.dims=1500", "--config.model.hidden=(256,)",
              "--config.seeds=(0,1)", "--config.levels=(0.5,)"]


def launch(workdir, *extra, wait=True):
  cmd = [sys.executable, "-m", "launch.main", f"--workdir={workdir}", *SLOW_SWEEP, *extra]
  if wait:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)


def read(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
  killed = tmp_path / "killed"
  proc = launch(killed, wait=False)
  checkpoints = killed / "checkpoints" / "ssb_vae"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    # checkpoints/ssb_vae/<layout>/chunk_0/<epoch>
    if checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.rglob("*")):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the sweep finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results.csv").exists()
  resumed = launch(killed)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert "resuming from the checkpoint after epoch" in resumed.stderr
  straight = launch(tmp_path / "straight")
  assert straight.returncode == 0, straight.stderr[-2000:]
  assert read(killed / "results.csv") == read(tmp_path / "straight" / "results.csv")
  a, b = np.load(killed / "codes.npz"), np.load(tmp_path / "straight" / "codes.npz")
  np.testing.assert_array_equal(a["db_codes"], b["db_codes"])


def test_fault_between_write_and_rename_keeps_the_previous_file(tmp_path, monkeypatch):
  path = str(tmp_path / "results.csv")
  results.write_csv(path, [dict(a=1, b=2)])

  def broken_replace(src, dst):
    raise OSError("injected fault before rename")

  monkeypatch.setattr(os, "replace", broken_replace)
  with pytest.raises(OSError, match="injected"):
    results.write_csv(path, [dict(a=3, b=4)])
  with pytest.raises(OSError, match="injected"):
    results.write_npz(str(tmp_path / "codes.npz"), x=np.zeros(3))
  monkeypatch.undo()
  assert read(path) == [dict(a="1", b="2")]
  assert sorted(os.listdir(tmp_path)) == ["results.csv"]  # no temp files left


def test_changed_config_names_the_fields_and_restart_discards(tmp_path):
  config = synthetic.get_config().to_dict()
  workdir.prepare(str(tmp_path), config)
  (tmp_path / "results.csv").write_text("old\n")
  changed = dict(config, epochs=7, seeds=(0, 5))
  with pytest.raises(workdir.WorkdirError, match=r"epochs \(3 -> 7\).*seeds"):
    workdir.prepare(str(tmp_path), changed)
  workdir.prepare(str(tmp_path), config)  # the same config re-opens fine
  assert (tmp_path / "results.csv").exists()
  for name in workdir.OUTPUTS:  # everything a sweep writes, files and folders
    target = tmp_path / name
    if "." in name:
      target.write_text("old\n")
    else:
      (target / "inner").mkdir(parents=True, exist_ok=True)
  (tmp_path / "notes.txt").write_text("mine\n")
  workdir.prepare(str(tmp_path), changed, restart=True)
  assert sorted(os.listdir(tmp_path)) == ["config.json", "notes.txt"]


def test_every_file_a_sweep_writes_is_an_output_that_restart_removes(tmp_path):
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.levels, config.seeds, config.epochs = (1.0,), (0,), 1
  workdir.prepare(str(tmp_path), config.to_dict())
  experiment.write_outputs(str(tmp_path), experiment.run_sweep(
      config, workdir=str(tmp_path)))
  written = set(os.listdir(tmp_path)) - {"config.json"}
  assert {"metrics.jsonl", "tensorboard", "summary.md", "codes.npz"} <= written
  assert written <= set(workdir.OUTPUTS)


def test_diverging_run_is_flagged_and_leaves_the_others_alone():
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.levels = (0.5,)
    config.seeds = (0, 1, 2)
  dataset = data.load(config.data)
  run = make_run(config, dataset)
  grid = grid_lib.build_grid(config, "ssb_vae")
  lr = grid.hparams["learning_rate"].copy()
  lr[1] = 1e30  # an absurd learning rate for the middle run only
  bad = grid_lib.Grid(grid.method, grid.seeds, grid.levels,
                      dict(grid.hparams, learning_rate=lr))
  out = grid_lib.train_grid(run, bad, 0)
  assert out.diverged_at[1] >= 0 and out.diverged_at[0] == out.diverged_at[2] == -1
  keep = [0, 2]
  healthy = grid_lib.Grid(grid.method, grid.seeds[keep], grid.levels[keep],
                          {k: v[keep] for k, v in grid.hparams.items()})
  ref = grid_lib.train_grid(run, healthy, 0)
  np.testing.assert_array_equal(out.db_codes[keep], ref.db_codes)
  np.testing.assert_allclose(out.epoch_metrics["loss"][:, keep],
                             ref.epoch_metrics["loss"], rtol=1e-5)


def test_diverged_rows_are_reported_and_left_out_of_means():
  rows = [dict(method="m", level=0.5, status="ok", **{"p@100": 0.5}),
          dict(method="m", level=0.5, status="diverged", **{"p@100": 0.0}),
          dict(method="m", level=0.5, status="ok", **{"p@100": 0.7})]
  (summary,) = results.summarise(rows)
  assert summary["runs"] == 2 and summary["diverged"] == 1
  assert summary["mean"] == pytest.approx(0.6)
  assert "1 diverged, not counted" in results.summary_text(rows)


def test_finished_methods_are_not_trained_again(tmp_path, monkeypatch):
  config = synthetic.get_config("method=phs_gs+ssb_vae")
  first = experiment.run_sweep(config, workdir=str(tmp_path))
  calls = []
  real = experiment.train_method
  monkeypatch.setattr(experiment, "train_method",
                      lambda *a, **k: calls.append(a[2]) or real(*a, **k))
  os.remove(tmp_path / "methods" / "ssb_vae.npz")
  again = experiment.run_sweep(config, workdir=str(tmp_path))
  assert calls == ["ssb_vae"]
  assert again.rows == first.rows
  np.testing.assert_array_equal(again.db_codes, first.db_codes)
  assert set(again.epoch_metrics["phs_gs"]) == set(first.epoch_metrics["phs_gs"])


def test_checkpoint_restores_typed_keys(tmp_path):
  from hashvae.checkpoint import Checkpoints
  store = Checkpoints(str(tmp_path), every=1)
  state = dict(k=jax.random.split(jax.random.key(3), 2), w=np.arange(4.0))
  store.save(1, state, [dict(loss=[1.0, None])])
  restored, history = store.restore(1, state)
  np.testing.assert_array_equal(jax.random.key_data(restored["k"]),
                                jax.random.key_data(state["k"]))
  assert history == [dict(loss=[1.0, None])]
  store.close()
