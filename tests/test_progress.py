"""Progress of the encode pass: logged from inside the compiled program,
per block, without changing the codes."""

import logging

import numpy as np

from configs import synthetic
from hashvae import data
from hashvae.sweep import specs
from hashvae.training import progress

from conftest import with_fields


def test_the_host_keeps_the_furthest_block_and_restarts_on_a_new_pass(monkeypatch, caplog):
  clock = iter([0.0, 20.0, 21.0, 40.0, 100.0, 130.0])
  monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
  with caplog.at_level(logging.INFO, logger="hashvae"):
    progress._seen("p", 10, np.array([0, 0]))  # t=0: starts the pass
    progress._seen("p", 10, np.array([3, 1]))  # t=20: runs disagree: the furthest
    progress._seen("p", 10, 4)  # t=21: under LOG_EVERY_S since the last line
    progress._seen("p", 10, 9)  # t=40: the last block: nothing more to say
    progress._seen("p", 10, 1)  # t=100: a new pass starts over
    progress._seen("p", 10, 4)  # t=130
  assert [r.getMessage() for r in caplog.records] == [
      "p: block 4/10 (40%), elapsed 20s, ETA 30s",
      "p: block 5/10 (50%), elapsed 30s, ETA 30s"]


def test_encoding_logs_its_blocks_and_the_block_size_leaves_the_codes(monkeypatch, caplog):
  config = with_fields(synthetic.get_config("method=ssb_vae"), seeds=(0,), levels=(1.0,),
                       epochs=1)
  dataset = data.load(data.spec_from_fields(config.data.to_dict()))
  whole = specs.train(config, specs.make_run(config, dataset, "ssb_vae"),
                      specs.build_grid(config, "ssb_vae"))
  monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
  small = with_fields(config, eval_batch_size=60)  # 200 items: 4 blocks, the last short
  with caplog.at_level(logging.INFO, logger="hashvae"):
    blocked = specs.train(small, specs.make_run(small, dataset, "ssb_vae"),
                          specs.build_grid(small, "ssb_vae"))
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("encode")]
  assert [line.split(" (")[0] for line in lines if "database" in line] == [
      "encode database: block 1/4", "encode database: block 2/4",
      "encode database: block 3/4"]
  np.testing.assert_array_equal(blocked.db_codes, whole.db_codes)
  np.testing.assert_allclose(blocked.query_scores, whole.query_scores, rtol=1e-5, atol=1e-5)
