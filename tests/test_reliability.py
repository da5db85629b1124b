"""Resume after a kill, atomic writes, config drift, divergence, skipped methods."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import synthetic
from hashvae import data
from hashvae.store import results, workdir
from hashvae.sweep import experiment, specs
from hashvae.sweep.specs import make_run
from hashvae.training import grid as grid_lib

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


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
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
  assert "restored the checkpoint after epoch" in resumed.stderr
  straight = launch(tmp_path / "straight")
  assert straight.returncode == 0, straight.stderr[-2000:]
  assert read(killed / "results.csv") == read(tmp_path / "straight" / "results.csv")
  a, b = (results.load_codes(str(w / "codes.npz")) for w in (killed, tmp_path / "straight"))
  np.testing.assert_array_equal(a["db_codes"], b["db_codes"])


@pytest.mark.parametrize("bits", [1, 8, 13, 64])
def test_packed_codes_read_back_exactly(tmp_path, bits):
  rng = np.random.default_rng(bits)
  codes = dict(db_codes=rng.integers(0, 2, (3, 17, bits), dtype=np.uint8),
               query_codes=rng.integers(0, 2, (3, 5, bits), dtype=np.uint8))
  path = str(tmp_path / "codes.npz")
  results.write_npz(path, db_labels=np.arange(17), query_labels=np.arange(5),
                    **results.packed_codes(**codes))
  with np.load(path) as f:
    assert f["db_codes"].shape == (3, 17, -(-bits // 8))  # 8 codes bits a byte
    np.testing.assert_array_equal(results.unpacked_codes(f, "query_codes", 1),
                                  codes["query_codes"][1])
  back = results.load_codes(path)
  for name, want in codes.items():
    np.testing.assert_array_equal(back[name], want)
  with pytest.raises(ValueError, match="different lengths"):
    results.packed_codes(a=codes["db_codes"], b=codes["db_codes"][..., :-1] if bits > 1
                         else np.zeros((1, 1, 2), np.uint8))


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


@pytest.mark.slow
def test_diverging_run_is_flagged_and_leaves_the_others_alone():
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.levels = (0.5,)
    config.seeds = (0, 1, 2)
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  run = make_run(config, dataset)
  grid = specs.build_grid(config, "ssb_vae")
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


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
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
  from hashvae.store.checkpoint import Checkpoints
  store = Checkpoints(str(tmp_path), every=1)
  state = dict(k=jax.random.split(jax.random.key(3), 2), w=np.arange(4.0))
  store.save(1, state, [dict(loss=[1.0, None])])
  restored, history = store.restore(1, state)
  np.testing.assert_array_equal(jax.random.key_data(restored["k"]),
                                jax.random.key_data(state["k"]))
  assert history == [dict(loss=[1.0, None])]
  store.close()


# --- damaged checkpoints and method files, the workdir lock, interruption ---

def truncate_files(folder):
  """Cuts every file under `folder` to half its size, as a full disk or an
  interrupted copy would leave it."""
  for path in folder.rglob("*"):
    if path.is_file():
      data = path.read_bytes()
      path.write_bytes(data[:len(data) // 2])


def small_state(shift):
  return dict(k=jax.random.split(jax.random.key(3), 2), w=np.arange(12.0) + shift)


def test_restore_latest_falls_back_past_a_damaged_checkpoint(tmp_path, caplog):
  from hashvae.store.checkpoint import CheckpointError, Checkpoints
  store = Checkpoints(str(tmp_path), every=1, keep=2)
  assert store.restore_latest(small_state(0)) is None  # nothing saved yet
  for epoch in (1, 2, 3):
    store.save(epoch, small_state(epoch), [dict(loss=[float(e)]) for e in range(epoch)])
  truncate_files(tmp_path / "3")
  with caplog.at_level("WARNING", logger="hashvae"):
    epoch, state, history = store.restore_latest(small_state(0))
  assert epoch == 2
  np.testing.assert_array_equal(state["w"], small_state(2)["w"])
  np.testing.assert_array_equal(jax.random.key_data(state["k"]),
                                jax.random.key_data(small_state(0)["k"]))
  assert history == [dict(loss=[0.0]), dict(loss=[1.0])]
  assert "the checkpoint after epoch 3 cannot be read" in caplog.text
  aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("corrupt-3-")]
  assert len(aside) == 1 and not (tmp_path / "3").exists()
  store.save(3, small_state(3), [])  # the resumed run saves epoch 3 again
  assert store.restore_latest(small_state(0))[0] == 3
  # None readable: nothing is moved, and the error says what to do.
  truncate_files(tmp_path / "2")
  truncate_files(tmp_path / "3")
  with pytest.raises(CheckpointError, match=r"none of its 2 checkpoint\(s\) can be read.*"
                                            r"--restart"):
    store.restore_latest(small_state(0))
  assert (tmp_path / "2").is_dir() and (tmp_path / "3").is_dir()
  store.close()


def interrupt_after_saving(monkeypatch, epoch):
  """Checkpoints.save raises KeyboardInterrupt once `epoch` is saved, as a
  Ctrl-C right after that save would."""
  from hashvae.store.checkpoint import Checkpoints
  real = Checkpoints.save

  def save(self, number, state, history):
    real(self, number, state, history)
    if number == epoch:
      raise KeyboardInterrupt
  monkeypatch.setattr(Checkpoints, "save", save)


def resumable_config():
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.levels, config.seeds, config.epochs = (1.0,), (0,), 4
    config.checkpoint_every, config.checkpoints_to_keep = 1, 2
  return config


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_the_one_before(tmp_path, monkeypatch,
                                                                  caplog):
  config = resumable_config()
  folder = tmp_path / "interrupted"
  workdir.prepare(str(folder), config.to_dict())
  interrupt_after_saving(monkeypatch, 3)
  with pytest.raises(KeyboardInterrupt):
    experiment.run_sweep(config, workdir=str(folder))
  monkeypatch.undo()
  (chunk,) = (folder / "checkpoints" / "ssb_vae").glob("*/chunk_0")
  assert sorted(p.name for p in chunk.iterdir()) == ["2", "3"]
  truncate_files(chunk / "3")
  with caplog.at_level("INFO", logger="hashvae"):
    resumed = experiment.run_sweep(config, workdir=str(folder))
  assert "the checkpoint after epoch 3 cannot be read" in caplog.text
  assert "restored the checkpoint after epoch 2" in caplog.text
  straight = experiment.run_sweep(config, workdir=str(tmp_path / "straight"))
  assert resumed.rows == straight.rows
  np.testing.assert_array_equal(resumed.db_codes, straight.db_codes)
  np.testing.assert_array_equal(resumed.query_codes, straight.query_codes)


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_damaged_finished_method_is_set_aside_and_trained_again(tmp_path, monkeypatch,
                                                                 caplog):
  config = synthetic.get_config("method=phs_gs+ssb_vae")
  with config.unlocked():
    config.levels, config.seeds, config.epochs = (1.0,), (0,), 2
  workdir.prepare(str(tmp_path), config.to_dict())
  first = experiment.run_sweep(config, workdir=str(tmp_path))
  npz = tmp_path / "methods" / "ssb_vae.npz"
  npz.write_bytes(npz.read_bytes()[:100])
  before = (tmp_path / "config.json").read_bytes()
  with caplog.at_level("WARNING", logger="hashvae"):
    workdir.prepare(str(tmp_path), config.to_dict())
  assert "ssb_vae: the finished method's files cannot be read" in caplog.text
  assert (tmp_path / "config.json").read_bytes() == before
  assert not npz.exists() and not (tmp_path / "methods" / "ssb_vae.variables").exists()
  calls = []
  real = experiment.train_method
  monkeypatch.setattr(experiment, "train_method",
                      lambda *a, **k: calls.append(a[2]) or real(*a, **k))
  again = experiment.run_sweep(config, workdir=str(tmp_path))
  assert calls == ["ssb_vae"] and again.rows == first.rows
  np.testing.assert_array_equal(again.db_codes, first.db_codes)


def test_damaged_config_json_is_named(tmp_path):
  config = synthetic.get_config().to_dict()
  workdir.prepare(str(tmp_path), config)
  (tmp_path / "config.json").write_text('{"bits": 8, "da')
  with pytest.raises(workdir.WorkdirError, match=r"config.json is damaged .*--restart"):
    workdir.prepare(str(tmp_path), config)
  workdir.prepare(str(tmp_path), config, restart=True)  # --restart replaces it
  assert workdir.read_config(str(tmp_path / "config.json"))["bits"] == 8


def test_lock_refuses_a_second_holder_at_once_and_names_the_first(tmp_path):
  import socket

  from hashvae.store import lock
  folder = str(tmp_path / "w")
  with lock.hold(folder) as holder:
    assert holder["pid"] == os.getpid()
    start = time.perf_counter()
    for attempt in (lock.check_free, lock.hold(folder).__enter__):
      with pytest.raises(lock.WorkdirLocked,
                         match=rf"is in use by pid {os.getpid()} on host "
                               rf"{re.escape(socket.gethostname())} since \d{{4}}-"):
        attempt(folder) if attempt is lock.check_free else attempt()
    assert time.perf_counter() - start < 1.0
  assert not os.path.exists(lock.lock_path(folder))  # released and removed
  lock.check_free(folder)
  with lock.hold(folder):
    pass


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  from hashvae.store import lock
  gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True).stdout.strip()
  (tmp_path / lock.LOCK_NAME).write_text(json.dumps(
      dict(pid=int(gone), host="oldhost", started="2024-01-01 00:00:00")))
  lock.check_free(str(tmp_path))  # nobody holds it
  with caplog.at_level("WARNING", logger="hashvae"), lock.hold(str(tmp_path)) as holder:
    assert holder["pid"] == os.getpid()
  assert f"taking over the lock of pid {gone} on host oldhost" in caplog.text


def test_workdir_that_is_a_file_or_under_one_is_refused(tmp_path):
  (tmp_path / "f").write_text("mine\n")
  with pytest.raises(workdir.WorkdirError, match=r"is a file, not a folder"):
    workdir.prepare(str(tmp_path / "f"), {})
  with pytest.raises(workdir.WorkdirError, match=r"cannot create the folder"):
    workdir.prepare(str(tmp_path / "f" / "w"), {})
  assert (tmp_path / "f").read_text() == "mine\n"


CONTENDED = ["--config=configs/synthetic.py:method=ssb_vae", "--config.epochs=40",
             "--config.checkpoint_every=5", "--config.data.train_size=2000",
             "--config.data.dims=800", "--config.model.hidden=(128,)",
             "--config.seeds=(0,)", "--config.levels=(1.0,)", "--cpu_devices=1"]


def start_main(folder, *extra, **kwargs):
  return subprocess.Popen([sys.executable, "-m", "launch.main", f"--workdir={folder}",
                           *CONTENDED, *extra], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate, proc, seconds=300):
  deadline = time.time() + seconds
  while time.time() < deadline and proc.poll() is None and not predicate():
    time.sleep(0.05)
  assert proc.poll() is None, "the sweep ended before the test could act"


def in_training(folder):
  return lambda: (folder / ".lock").exists() and (folder / "checkpoints").is_dir()


@pytest.mark.slow
def test_second_sweep_is_refused_and_the_first_is_unchanged(tmp_path):
  shared = tmp_path / "shared"
  first = start_main(shared)
  wait_for(in_training(shared), first)
  holder = json.loads((shared / ".lock").read_text())
  assert holder["pid"] == first.pid
  start = time.perf_counter()
  second = start_main(shared)
  _, err = second.communicate(timeout=300)
  seconds = time.perf_counter() - start
  assert first.poll() is None, "the first sweep ended before the second was refused"
  assert second.returncode == 1
  lines = [x for x in err.splitlines() if x.startswith("error:")]
  assert len(lines) == 1 and f"is in use by pid {first.pid} on host" in lines[0], err
  assert "Traceback" not in err
  print(f"second process refused {seconds:.1f} s after it started (python and jax import "
        "included)")
  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-2000:]
  alone = start_main(tmp_path / "alone")
  _, err = alone.communicate(timeout=600)
  assert alone.returncode == 0, err[-2000:]
  for name in ("results.csv", "codes.npz", "config.json"):
    assert (shared / name).read_bytes() == (tmp_path / "alone" / name).read_bytes(), name
  assert not (shared / ".lock").exists()


@pytest.mark.slow
def test_interrupted_sweep_says_how_to_resume_and_does(tmp_path):
  folder = tmp_path / "w"
  proc = start_main(folder)
  wait_for(lambda: any(p.name.isdigit() for p in (folder / "checkpoints").rglob("*"))
           if (folder / "checkpoints").is_dir() else False, proc)
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130
  assert "Traceback" not in err and "KeyboardInterrupt" not in err
  assert err.splitlines()[-1].startswith("interrupted: rerun the same command to resume")
  assert not (folder / ".lock").exists()
  resumed = start_main(folder)
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err[-2000:]
  epochs = [int(n) for n in re.findall(r"epoch (\d+)/40", err)]
  assert epochs and epochs[0] > 1, err[-2000:]  # it did not start again from epoch 1
