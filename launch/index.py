r"""Writes a searchable index of one trained run of a finished sweep.

    python -m launch.index --workdir=runs/snippets16 --run=best --level=1.0 \
        --out=runs/snippets16/index.hvi
    python -m launch.index --workdir=runs/digits --run=7

--run is a row of WORKDIR/results.csv, or `best` (highest --metric at --level).
The index is one memory-mapped file (hashvae.retrieval.index: format
version 3); launch.search answers from it without jax. --faiss_out also
writes the run's database codes as a faiss IndexBinaryFlat, for serving
with faiss (`pip install .[faiss]`; hashvae.retrieval.faiss_export).
"""

import os

from absl import app, flags

from hashvae import api
from hashvae.retrieval import faiss_export, index
from hashvae.store import workdir
from launch import errors

_WORKDIR = flags.DEFINE_string("workdir", None, "A finished sweep's folder.")
_RUN = flags.DEFINE_string("run", "best", "Row of results.csv, or 'best'.")
_LEVEL = flags.DEFINE_float("level", 1.0, "With --run=best: the labelled fraction.")
_METHOD = flags.DEFINE_string("method", None, "With --run=best: only this method.")
_METRIC = flags.DEFINE_string("metric", "p@100", "With --run=best: the metric.")
_OUT = flags.DEFINE_string("out", None, "Index file (default WORKDIR/index_RUN.hvi).")
_FAISS_OUT = flags.DEFINE_string(
    "faiss_out", None, "Also write the run's database codes to this faiss binary "
    "index file (needs faiss: pip install .[faiss]).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  workdir.check_finished(_WORKDIR.value)  # a damaged file named, not a traceback
  sweep = api.Sweep(_WORKDIR.value)
  try:
    if _RUN.value == "best":
      run = sweep.best_run(_LEVEL.value, _METRIC.value, _METHOD.value)
    else:
      run = int(_RUN.value)
    row = sweep.row(run)
  except (ValueError, IndexError) as e:
    raise app.UsageError(f"--run={_RUN.value}: {e}") from e
  out = _OUT.value or os.path.join(_WORKDIR.value, f"index_{run}{index.SUFFIX}")
  if os.path.isdir(out):
    raise app.UsageError(f"--out={out} is a folder: give the index file's path")
  try:
    index.build(sweep, run, out)
  except index.NotIndexableError as e:
    raise app.UsageError(f"--run={_RUN.value}: {e}") from e
  if _FAISS_OUT.value:
    try:
      faiss_export.write(sweep.codes(run)[1], _FAISS_OUT.value)
    except ImportError as e:
      raise app.UsageError(f"--faiss_out: {e}") from e
    print(f"wrote {_FAISS_OUT.value}: faiss IndexBinaryFlat of the run's database codes")
  print(f"wrote {out}: run {run} ({row['method']}, seed {row['seed']}, level "
        f"{row['level']}, p@100 {row.get('p@100', '?')}), {sweep.dataset.database_size} items")


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
