"""Per-epoch training metrics: WORKDIR/metrics.jsonl and TensorBoard events.

Each line of metrics.jsonl is one (method, epoch): every loss term averaged
over the grid's runs (non-finite runs left out) and per run, in grid order.
TensorBoard events go to WORKDIR/tensorboard/<method>/ through tensorboardX,
which writes the event format without TensorFlow: scalars
`<term>/mean` and `<term>/run_<i>`.

Lines are appended live while a method trains; when it finishes, its lines
are rewritten from the complete history, so a run resumed after a crash
leaves no duplicate epochs in the file.
"""

from __future__ import annotations

import json
import os

import numpy as np

from hashvae.store import results


def epoch_record(method: str, epoch: int, terms: dict) -> dict:
  """{term: [runs]} -> one JSON-able record (NaN/inf written as null)."""
  clean = lambda v: float(v) if np.isfinite(v) else None
  record = dict(method=method, epoch=epoch + 1)
  for name, values in terms.items():
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    record[name] = dict(mean=clean(finite.mean()) if finite.size else None,
                        runs=[clean(v) for v in values])
  return record


class MetricsLog:
  """One method's log. `chunked`: the grid trains as several chunks of runs,
  so a live line holds one chunk (it says which: `first_run`) and the grid
  means wait for `finish`."""

  def __init__(self, workdir: str, method: str, chunked: bool = False):
    from tensorboardX import SummaryWriter  # imported here: only training logs

    self.path = os.path.join(workdir, "metrics.jsonl")
    self.method = method
    self.writer = SummaryWriter(os.path.join(workdir, "tensorboard", method))
    self.chunked = chunked

  def epoch(self, epoch: int, terms: dict, first_run: int = 0):
    """Appends one epoch of runs first_run, first_run + 1, ..."""
    record = epoch_record(self.method, epoch, terms)
    if self.chunked:
      record["first_run"] = first_run
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in record.items():
      if isinstance(value, dict):
        if value["mean"] is not None and not self.chunked:
          self.writer.add_scalar(f"{name}/mean", value["mean"], epoch + 1)
        for i, v in enumerate(value["runs"]):
          if v is not None:
            self.writer.add_scalar(f"{name}/run_{first_run + i:03d}", v, epoch + 1)
    self.writer.flush()

  def finish(self, history: dict):
    """Rewrites this method's lines from its full history {term: [epochs, runs]}."""
    kept = []
    if os.path.exists(self.path):
      with open(self.path, encoding="utf-8") as f:
        kept = [line for line in f if json.loads(line)["method"] != self.method]
    epochs = len(next(iter(history.values())))
    if self.chunked:  # the grid means were not written live
      for e in range(epochs):
        for name, values in history.items():
          finite = values[e][np.isfinite(values[e])]
          if finite.size:
            self.writer.add_scalar(f"{name}/mean", float(finite.mean()), e + 1)
    mine = [json.dumps(epoch_record(self.method, e, {k: v[e] for k, v in history.items()}))
            + "\n" for e in range(epochs)]
    results.write_text(self.path, "".join(kept + mine))
    self.writer.close()


def read(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
