"""metrics.jsonl and the TensorBoard event files, read back."""

import glob
import struct

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from configs import synthetic
from hashvae.store import metrics_log
from hashvae.sweep import experiment


def read_events(folder):
  """(tag, step, value) from TFRecord-framed Event protos, written by any writer."""
  out = []
  for path in sorted(glob.glob(f"{folder}/events.out.tfevents.*")):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (length,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
      pos += 12 + length + 4  # length, its crc, the record, its crc
      for value in event.summary.value:
        out.append((value.tag, event.step, value.simple_value))
  return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  folder = tmp_path_factory.mktemp("run")
  config = synthetic.get_config("method=phs_gs+ssb_vae")
  return folder, config, experiment.run_sweep(config, workdir=str(folder))


def test_jsonl_holds_every_term_per_run_and_mean(sweep):
  folder, config, result = sweep
  records = metrics_log.read(str(folder / "metrics.jsonl"))
  assert [(r["method"], r["epoch"]) for r in records] == [
      (m, e) for m in ("phs_gs", "ssb_vae") for e in range(1, config.epochs + 1)]
  history = result.epoch_metrics["ssb_vae"]
  last = records[-1]
  for term in ("loss", "reconstruction", "kl", "pointwise", "pairwise"):
    np.testing.assert_allclose(last[term]["runs"], history[term][-1], rtol=1e-6)
    assert last[term]["mean"] == pytest.approx(np.mean(history[term][-1]), rel=1e-6)


def test_tensorboard_events_hold_the_loss_scalars(sweep):
  folder, config, result = sweep
  events = read_events(folder / "tensorboard" / "ssb_vae")
  loss = sorted((step, v) for tag, step, v in events if tag == "loss/mean")
  assert [s for s, _ in loss] == list(range(1, config.epochs + 1))
  np.testing.assert_allclose([v for _, v in loss],
                             result.epoch_metrics["ssb_vae"]["loss"].mean(axis=1), rtol=1e-5)
  runs = {tag for tag, _, _ in events if tag.startswith("pairwise/run_")}
  assert len(runs) == len(result.rows) // 2  # one series per run of the method


def test_finish_rewrites_without_duplicates(tmp_path):
  log = metrics_log.MetricsLog(str(tmp_path), "m")
  terms = lambda v: dict(loss=np.array([v, v + 1.0]))
  for e in range(3):
    log.epoch(e, terms(float(e)))
  log.epoch(1, terms(1.0))  # what a resumed run appends again
  log.finish(dict(loss=np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])))
  records = metrics_log.read(str(tmp_path / "metrics.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert records[2]["loss"] == dict(mean=2.5, runs=[2.0, 3.0])


def test_a_chunked_grid_logs_one_grid_mean_per_epoch(tmp_path):
  # Chunk 0 starts at run 0, like an unsplit grid: its lines must still be
  # marked as a chunk, and TensorBoard's mean must be the whole grid's only.
  log = metrics_log.MetricsLog(str(tmp_path), "m", chunked=True)
  history = np.array([[[0.0, 1.0, 5.0, 7.0]], [[2.0, 3.0, 9.0, 11.0]]])  # [epochs, 1, runs]
  for first in (0, 2):
    for e in range(2):
      log.epoch(e, dict(loss=history[e, 0, first:first + 2]), first_run=first)
  live = metrics_log.read(str(tmp_path / "metrics.jsonl"))
  assert [r["first_run"] for r in live] == [0, 0, 2, 2]
  log.finish(dict(loss=history[:, 0]))
  means = sorted((s, v) for t, s, v in read_events(tmp_path / "tensorboard" / "m")
                 if t == "loss/mean")
  assert means == [(1, 3.25), (2, 6.25)]
  records = metrics_log.read(str(tmp_path / "metrics.jsonl"))
  assert [r["loss"]["mean"] for r in records] == [3.25, 6.25]
