"""A grid too large for the state budget (or, on a CPU, the run cap) runs as
chunks, with the same results, compiled once."""

import dataclasses
import types
from unittest import mock

import numpy as np
import pytest

from configs import synthetic
from hashvae import data
from hashvae.core import sharding
from hashvae.store import metrics_log
from hashvae.sweep import experiment, specs
from hashvae.sweep.specs import make_run
from hashvae.training import chunking
from hashvae.training import grid as grid_lib

from conftest import with_fields
from test_metrics_log import read_events


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_chunked_grid_equals_the_whole_grid(tmp_path):
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.seeds = (0, 1, 2)  # x 2 levels = 6 runs
    config.cpu_runs_per_chunk = 0  # the budget alone decides
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  per_run = chunking.state_bytes_per_run(make_run(config, dataset), 0)
  assert chunking.runs_per_chunk(6, per_run, 2 * per_run + 1, 1) == 2
  whole = experiment.train_method(config, dataset, "ssb_vae")
  with config.unlocked():
    # Two runs a chunk: the budget holds the data plus 2.5 runs' state.
    budget = 2.5 * per_run + chunking.data_bytes(make_run(config, dataset).arrays)
    config.state_memory_budget_mb = budget / 2**20
  chunked = experiment.train_method(config, dataset, "ssb_vae", workdir=str(tmp_path))
  layout = tmp_path / "checkpoints" / "ssb_vae" / "3_chunks_of_2"
  assert sorted(p.name for p in layout.iterdir()) == ["chunk_0", "chunk_1", "chunk_2"]
  np.testing.assert_array_equal(chunked.db_codes, whole.db_codes)
  np.testing.assert_array_equal(chunked.query_codes, whole.query_codes)
  for a, b in zip(chunked.rows, whole.rows, strict=True):
    assert a == b
  np.testing.assert_allclose(chunked.epoch_metrics["loss"], whole.epoch_metrics["loss"],
                             rtol=1e-6)
  records = metrics_log.read(str(tmp_path / "metrics.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2, 3]  # rewritten whole at the end
  assert len(records[0]["loss"]["runs"]) == 6
  # TensorBoard: one grid mean per epoch (none from the first chunk alone).
  means = sorted((step, v) for tag, step, v in read_events(
      tmp_path / "tensorboard" / "ssb_vae") if tag == "loss/mean")
  assert [step for step, _ in means] == [1, 2, 3]
  np.testing.assert_allclose([v for _, v in means],
                             whole.epoch_metrics["loss"].mean(axis=1), rtol=1e-5)


def test_chunk_size_respects_devices_and_budget():
  assert chunking.runs_per_chunk(150, 65 * 2**20, 4096 * 2**20, 1) == 50  # 3 x 50, not 63+63+24
  assert chunking.runs_per_chunk(50, 65 * 2**20, 2048 * 2**20, 1) == 25  # 31 fit
  assert chunking.runs_per_chunk(50, 65 * 2**20, 512 * 2**20, 4) == 28  # 28 fit: 2 chunks, 7 a device
  assert chunking.runs_per_chunk(150, 65 * 2**20, 4096 * 2**20, 4) == 150
  assert chunking.runs_per_chunk(10, 10**12, 1, 2) == 2  # at least one run per device
  # A cap per device, on top of the budget (0: none).
  assert chunking.runs_per_chunk(50, 65 * 2**20, 2048 * 2**20, 1, 5) == 5  # 10 x 5
  assert chunking.runs_per_chunk(50, 65 * 2**20, 2048 * 2**20, 4, 5) == 20  # 3 chunks, 5 a device
  assert chunking.runs_per_chunk(50, 65 * 2**20, 2048 * 2**20, 1, 0) == 25
  assert chunking.runs_per_chunk(50, 65 * 2**20, 160 * 2**20, 1, 5) == 2  # the budget is tighter
  assert chunking.runs_per_chunk(50, 65 * 2**20, 2048 * 2**20, 2, 5) == 10  # 5 x (2 x 5)
  assert chunking.runs_per_chunk(9, 65 * 2**20, 2048 * 2**20, 2, 5) == 9  # padded to 10


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_cpu_run_cap_chunks_the_grid_and_compiles_once(tmp_path, caplog):
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.seeds = (0, 1, 2, 3, 4)  # x 2 levels = 10 runs: 4 + 4 + 2
    config.cpu_runs_per_chunk = 4
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  traces = []

  def counted_run(*args, **kwargs):
    run = make_run(*args, **kwargs)
    def train_epoch(arrays, state):
      traces.append(1)  # runs once per trace, not per call
      return run.train_epoch(arrays, state)
    return dataclasses.replace(run, train_epoch=train_epoch)

  with mock.patch.object(specs, "make_run", counted_run):
    chunked = experiment.train_method(config, dataset, "ssb_vae", workdir=str(tmp_path))
  layout = tmp_path / "checkpoints" / "ssb_vae" / "3_chunks_of_4"
  assert sorted(p.name for p in layout.iterdir()) == ["chunk_0", "chunk_1", "chunk_2"]
  assert len(traces) == 1  # the last chunk padded to 4: one compiled epoch step
  with config.unlocked():
    config.cpu_runs_per_chunk = 0
  # Another layout in the same workdir (as a rerun on another device count):
  # the 4-run checkpoints are left alone, not restored into a 10-run program.
  whole = experiment.train_method(config, dataset, "ssb_vae", workdir=str(tmp_path))
  assert sorted(p.name for p in layout.parent.iterdir()) == [
      "1_chunks_of_10", "3_chunks_of_4"]
  assert "another chunk layout (3_chunks_of_4) are not used" in caplog.text
  np.testing.assert_array_equal(chunked.db_codes, whole.db_codes)
  np.testing.assert_array_equal(chunked.query_codes, whole.query_codes)


def test_the_run_cap_applies_on_cpu_devices_only():
  config = synthetic.get_config("method=ssb_vae")
  with config.unlocked():
    config.cpu_runs_per_chunk = 2
  run = make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))
  cpu = sharding.run_mesh(1)
  assert specs.chunk_size(config, run, 6, cpu) == 2
  gpu_device = types.SimpleNamespace(platform="gpu")
  gpu = types.SimpleNamespace(devices=np.array([gpu_device]), local_devices=[gpu_device])
  assert specs.chunk_size(config, run, 6, gpu) == 6  # the state budget alone


def test_the_data_on_each_device_comes_off_the_state_budget(caplog):
  config = synthetic.get_config("method=ssb_vae")
  run = make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))
  gpu_device = types.SimpleNamespace(platform="gpu")
  gpu = types.SimpleNamespace(devices=np.array([gpu_device]), local_devices=[gpu_device])
  per_run = chunking.state_bytes_per_run(run, config.base_seed)
  data_size = chunking.data_bytes(run.arrays)
  # CSR data: row pointers, then a column and a value (and a target) per nonzero.
  db, queries = run.arrays["inputs"], run.arrays["query_inputs"]
  nonzeros = db.values.size
  assert data_size == 4 * (db.items + 1 + 3 * nonzeros + queries.items + 1
                           + 2 * queries.values.size + run.arrays["label_rows"].size)
  with config.unlocked():  # room for exactly 3 runs once the data is placed
    config.state_memory_budget_mb = (data_size + 3 * per_run + per_run // 2) / 2**20
  assert specs.chunk_size(config, run, 12, gpu) == 3
  with config.unlocked():  # the data and half a run: one run at a time, and a warning
    config.state_memory_budget_mb = (data_size + per_run // 2) / 2**20
  assert specs.chunk_size(config, run, 12, gpu) == 1
  assert "the data takes" in caplog.text


def test_chunks_of_a_grid_share_one_program_and_one_copy_of_the_data(monkeypatch):
  config = with_fields(synthetic.get_config("method=ssb_vae"), cpu_runs_per_chunk=1,
                       devices=1, epochs=1)
  run = make_run(config, data.load(data.spec_from_fields(config.data.to_dict())))
  grid = specs.build_grid(config, "ssb_vae")
  programs, build = [], grid_lib.grid_program
  monkeypatch.setattr(grid_lib, "grid_program",
                      lambda *a, **k: programs.append(build(*a, **k)) or programs[-1])
  out = specs.train(config, run, grid)
  assert len(grid) == 4 and out.db_codes.shape[0] == 4  # four chunks of one run
  (program,) = programs  # built once: the data placed on the devices once
  assert program.epoch_step._cache_size() == 1  # and compiled once
  np.testing.assert_array_equal(program.arrays["label_rows"], run.arrays["label_rows"])
