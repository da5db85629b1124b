"""Rebuilds summary.md, summary.tex and p_at_100.png from results.csv files.

    python -m launch.report --results=runs/s16/results.csv,runs/s32/results.csv \
        --out=runs/snippets

    python -m launch.report --metrics=runs/s16/metrics.jsonl --out=runs/s16

Several files are merged (e.g. 16 and 32 bits of one dataset): each
(dataset, bits) gets its own tables and figure panel.
"""

import os

from absl import app, flags, logging

from hashvae import metrics_log, reports, results

_RESULTS = flags.DEFINE_list("results", [], "results.csv files to merge.")
_METRICS = flags.DEFINE_string("metrics", None, "A metrics.jsonl: draws "
                               "training_curves.png.")
_OUT = flags.DEFINE_string("out", None, "Folder for the reports.")
flags.mark_flags_as_required(["out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not (_RESULTS.value or _METRICS.value):
    raise app.UsageError("give --results and/or --metrics")
  if _METRICS.value:
    path = os.path.join(_OUT.value, "training_curves.png")
    reports.training_curves(metrics_log.read(_METRICS.value), path)
    logging.info("wrote %s", path)
  if _RESULTS.value:
    rows = [row for path in _RESULTS.value for row in results.read_csv(path)]
    if not rows:
      raise app.UsageError(f"no rows in {_RESULTS.value}")
    for path in reports.write_reports(rows, _OUT.value):
      logging.info("wrote %s", path)
    print(reports.markdown(rows))


def cli():
  """Console entry point (see pyproject.toml)."""
  app.run(main)


if __name__ == "__main__":
  cli()
