r"""Rebuilds summary.md, summary.tex and p_at_100.png from results.csv files.

    python -m launch.report --results=runs/s16/results.csv,runs/s32/results.csv \
        --out=runs/snippets

    python -m launch.report --metrics=runs/s16/metrics.jsonl --out=runs/s16

Several files are merged (e.g. 16 and 32 bits of one dataset): each
(dataset, bits) gets its own tables and figure panel. Every input is read
and checked before anything is written; a damaged file is named with its
line.
"""

import json
import os

from absl import app, flags, logging

from hashvae.store import reports, workdir
from launch import errors

_RESULTS = flags.DEFINE_list("results", [], "results.csv files to merge.")
_METRICS = flags.DEFINE_string("metrics", None, "A metrics.jsonl: draws "
                               "training_curves.png.")
_OUT = flags.DEFINE_string("out", None, "Folder for the reports.")
flags.mark_flags_as_required(["out"])


def read_metrics(path: str) -> list[dict]:
  """metrics.jsonl records; WorkdirError naming the line that is not one."""
  records = []
  with open(path, encoding="utf-8", errors="strict") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise workdir.WorkdirError(f"{path}:{number}: not a JSON line ({e.msg}); a "
                                   "truncated metrics.jsonl?") from e
      if not (isinstance(record, dict) and "method" in record and "epoch" in record
              and any(isinstance(v, dict) and "mean" in v for v in record.values())):
        raise workdir.WorkdirError(f"{path}:{number}: not a metrics record (needs "
                                   "'method', 'epoch' and loss terms with a 'mean')")
      records.append(record)
  if not records:
    raise workdir.WorkdirError(f"{path} holds no metrics records")
  return records


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not (_RESULTS.value or _METRICS.value):
    raise app.UsageError("give --results and/or --metrics")
  errors.check_out(_OUT.value)
  # Read everything first: a bad second file must not leave half the reports.
  records = read_metrics(errors.existing_file(_METRICS.value, "metrics")) if _METRICS.value else None
  rows = [row for path in _RESULTS.value
          for row in workdir.read_results(errors.existing_file(path, "results"))]
  if records is not None:
    path = os.path.join(_OUT.value, "training_curves.png")
    reports.training_curves(records, path)
    logging.info("wrote %s", path)
  if rows:
    for path in reports.write_reports(rows, _OUT.value):
      logging.info("wrote %s", path)
    print(reports.markdown(rows))


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
