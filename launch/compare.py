r"""Compares hashing methods, each with its weights chosen on validation, from
the results.csv of their tuned sweeps: compare.md and one figure per
(dataset, bits), compare_<dataset>_<bits>.png.

    python -m launch.compare \
        --results=runs/a/final/results.csv,runs/b/final/results.csv \
        --out=runs/compare [--metric=p@100]
    python -m launch.compare --results='runs/own_snippets/*/snippets_16/final/results.csv' \
        --out=runs/own_snippets

A --results entry with *, ? or [ stands for the files it matches. The
rows of every file are merged; one (dataset, bits, method, level, seed)
may appear once only, so a run present in two files (or twice in one) is an
error naming both places. compare.md gives mean ± std over seeds per method
and labelled fraction; the highest mean is bold (starred in the figure)
where its lead over the runner-up is larger than both their stds. Every
input is read and checked before anything is written; compare.md is also
printed.
"""

import glob

from absl import app, flags, logging

from hashvae.store import reports, workdir
from launch import errors

_RESULTS = flags.DEFINE_list("results", [], "results.csv files to merge (e.g. the "
                             "final/results.csv of a launch.tune folder per method).")
_OUT = flags.DEFINE_string("out", None, "Folder for compare.md and the figures.")
_METRIC = flags.DEFINE_string("metric", "p@100", "The metric compared (a results.csv "
                              "column, e.g. p@100 or map@1000).")
flags.mark_flags_as_required(["out"])


# launch.report's checks of the same flags (its module defines flags of the
# same names, so it cannot be imported here).
def run_key(row: dict) -> tuple:
  """What names one run: (dataset, bits, method, level, seed)."""
  return (str(row["dataset"]), int(row["bits"]), str(row["method"]), float(row["level"]),
          row.get("seed", ""))


def merge(paths: list[str]) -> tuple[list[dict], list[str]]:
  """The rows of every results.csv, in order, and where each is (file:line);
  WorkdirError naming both places of a run that appears twice."""
  rows, places, seen = [], [], {}
  for path in paths:
    for line, row in enumerate(workdir.read_results(path), start=2):  # 1: the header
      place = f"{path}:{line}"
      empty = [c for c in ("dataset", "bits", "method", "level") if row[c] == ""]
      if empty:
        raise workdir.WorkdirError(f"{place}: no {', '.join(empty)}")
      key = run_key(row)
      if key in seen:
        dataset, bits, method, level, seed = key
        raise workdir.WorkdirError(
            f"dataset {dataset}, {bits} bits, method {method}, level {level:g}, seed "
            f"{seed} is in both {seen[key]} and {place}: give each run once (one "
            "results.csv per method, with its chosen weights)")
      seen[key] = place
      rows.append(row)
      places.append(place)
  return rows, places


def result_files(entries: list[str]) -> list[str]:
  """--results' files in order; an entry with *, ? or [ is a pattern that
  stands for its matches, sorted, and must match at least one file."""
  paths = []
  for entry in entries:
    if any(c in entry for c in "*?["):
      found = sorted(glob.glob(entry))
      if not found:
        raise app.UsageError(f"--results: no file matches {entry!r}")
      paths += found
    else:
      paths.append(entry)
  return [errors.existing_file(path, "results") for path in paths]


def check_metric(rows: list[dict], places: list[str], metric: str):
  """Every finished run must hold `metric` (diverged ones are counted, not
  measured)."""
  if not any(row.get(metric, "") != "" for row in rows):
    measured = list(dict.fromkeys(k for row in rows for k, v in row.items()
                                  if "@" in k and v != ""))
    raise app.UsageError(f"--metric={metric}: not measured in these results (they hold "
                         f"{', '.join(measured) or 'no metrics'})")
  for row, place in zip(rows, places, strict=True):
    if row.get("status", "ok") == "ok" and row.get(metric, "") == "":
      raise workdir.WorkdirError(f"{place}: a finished run without {metric}")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _RESULTS.value:
    raise app.UsageError("give --results=A.csv,B.csv (the results.csv files to compare)")
  errors.check_out(_OUT.value)
  # Read and check everything first: an error must not leave half the outputs.
  rows, places = merge(result_files(_RESULTS.value))
  check_metric(rows, places, _METRIC.value)
  panels = {(str(r["dataset"]), int(r["bits"])) for r in rows}
  names = {reports.comparison_figure_name(*panel) for panel in panels}
  if len(names) < len(panels):
    raise workdir.WorkdirError(f"datasets {sorted({d for d, _ in panels})} would share "
                               "figure names (they differ only in characters a file name "
                               "cannot hold)")
  text, paths = reports.write_comparison(rows, _OUT.value, _METRIC.value)
  for path in paths:
    logging.info("wrote %s", path)
  print(text)


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
