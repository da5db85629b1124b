"""Searches an index by Hamming distance and prints the top K items.

    python -m launch.search --index=runs/snippets16/index.hvi --text "football match"
    python -m launch.search --index=INDEX --query-file=queries.txt --k=5
    python -m launch.search --index=INDEX --query-id=12      # an item's own code

Per query, the results in groups of equal distance, each headed by how many
items lie at that distance (ties are ranked by database position); each
result line: rank, distance, the item's id in the training data (its row
number, or its id column's value), label and the first line of its text.
--ranking=tie_break orders the items inside a distance by the query's
confidence in the bits that differ; --ranking=asymmetric ranks by that
weighted distance alone (hashvae/retrieval/rerank.py).
Imports numpy and the index alone: no jax, no scikit-learn.
"""

import os
import sys
import time

import numpy as np
from absl import app, flags

from hashvae.retrieval import index as index_lib
from launch import errors

_INDEX = flags.DEFINE_string("index", None, "Index file from launch.index.")
_TEXT = flags.DEFINE_string("text", None, "A query document.")
_QUERY_FILE = flags.DEFINE_string("query-file", None, "One query document per line.")
_QUERY_ID = flags.DEFINE_string("query-id", None, "Query with the code of the indexed "
                                "item of this id (as results print it).")
_K = flags.DEFINE_integer("k", 10, "Results per query.", lower_bound=1)
_RANKING = flags.DEFINE_enum(
    "ranking", "hamming", ("hamming", "tie_break", "asymmetric"),
    "hamming: by distance, ties by database position (the study's protocol). "
    "tie_break: by distance, ties by the query's confidence in the bits that "
    "differ. asymmetric: by that confidence-weighted distance alone. The "
    "last two need a text query (they read its code scores).")
_WIDTH = flags.DEFINE_integer("width", 100, "Characters per printed line (a result's text "
                              "is cut to fit).", lower_bound=60)
flags.mark_flags_as_required(["index"])


def read_queries(path: str) -> tuple[list[str], list[int]]:
  """(queries, their line numbers): one query per non-empty line of a UTF-8
  file; the file and line named when it is not UTF-8."""
  if not os.path.isfile(path):
    raise app.UsageError(f"--query-file={path}: no such file")
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  queries, numbers = [], []
  for number, raw in enumerate(lines, start=1):
    try:
      text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
      raise app.UsageError(f"--query-file={path}:{number}: not UTF-8 text (byte "
                           f"{e.start} of the line): save the file as UTF-8") from e
    if text:
      queries.append(text)
      numbers.append(number)
  if not queries:
    raise app.UsageError(f"--query-file={path} holds no query (one per line)")
  return queries, numbers


def item_position(index, item_id: str) -> int:
  """The database position of the item whose id prints as `item_id`."""
  ids = index.db_ids
  if isinstance(ids, np.ndarray):
    try:
      found = np.flatnonzero(ids == int(item_id))
    except ValueError:
      found = []
  else:
    found = [p for p, i in enumerate(ids.tolist()) if i == item_id]
  if not len(found):
    kind = {"row": "row numbers of the training file", "position": "database positions",
            "column": "values of the training table's id column"}[index.meta["ids"]]
    raise app.UsageError(f"--query-id={item_id}: no indexed item has this id (ids are "
                         f"{kind}, from {index.item_id(0)} to {index.item_id(-1)})")
  return int(found[0])


def text_scores(index, queries: list[str], where) -> np.ndarray:
  """The queries' code scores (codes 1[score > 0]); a usage error naming
  (`where(n)`) a query with no word of the vocabulary."""
  if index.vectoriser is None:
    raise app.UsageError(f"{_INDEX.value} was not built from text: query it with "
                         "--query-id")
  try:
    return index.text_scores(queries)
  except index_lib.NoKnownWordError as e:
    # Its input row would be all zero: the code of the biases alone, the
    # results unrelated to the text.
    terms = len(index.vectoriser.vocabulary_table)
    raise app.UsageError(f"{where(e.number)}: the query {e.query[:60]!r} has no word of "
                         f"the index's vocabulary ({terms} terms): nothing to search "
                         "with") from e


def print_results(index, query: str, code, ranking, row: int, width: int):
  """One query's results, a header before each run of equal distances;
  lines of at most `width` characters."""
  bits = "".join(map(str, code))
  print(f"query: {query[:max(width - len(bits) - 15, 20)]}  code: {bits}")
  positions, distances = ranking.positions[row], ranking.distances[row]
  names = index.meta["class_names"] or ["0"]
  label_width = min(max(len(n) for n in names), 24)
  grouped = bool(np.all(np.diff(distances) >= 0))  # not so for "asymmetric"
  for rank, (p, d) in enumerate(zip(positions, distances, strict=True), start=1):
    if grouped and (rank == 1 or d != distances[rank - 2]):
      total, shown = int(ranking.counts[row, d]), int((distances == d).sum())
      more = f", {shown} shown" if shown < total else ""
      print(f"  distance {d}: {total} item{'s' if total != 1 else ''}{more}")
    line = (f"  {rank:4d}  d={int(d):<3d} id {index.item_id(p):>8}  "
            f"{index.label_name(index.db_labels[p])[:label_width]:<{label_width}}  ")
    print(line + index.first_line(p, max(width - len(line), 20)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  given = [f for f in (_TEXT.value, _QUERY_FILE.value, _QUERY_ID.value) if f is not None]
  if len(given) != 1:
    raise app.UsageError("give exactly one of --text, --query-file, --query-id")
  start = time.perf_counter()
  index = index_lib.load(_INDEX.value)
  opened = time.perf_counter()
  scores = None
  if _QUERY_ID.value is not None:
    if _RANKING.value != "hamming":
      raise app.UsageError(f"--ranking={_RANKING.value} reads a query's code scores, "
                           "which an indexed item's code does not keep: query with "
                           "--text or --query-file")
    position = item_position(index, _QUERY_ID.value)
    queries = [f"item {_QUERY_ID.value}"]
    codes = np.unpackbits(index.packed_codes[[position]], axis=1, count=index.bits)
  else:
    if _TEXT.value is not None:
      queries = [_TEXT.value]
      scores = text_scores(index, queries, lambda n: "--text")
    else:
      queries, numbers = read_queries(_QUERY_FILE.value)
      scores = text_scores(index, queries,
                           lambda n: f"--query-file={_QUERY_FILE.value}:{numbers[n - 1]}")
    codes = index.encoder.codes(scores)
  ranking = index.ranked(codes, _K.value, scores, _RANKING.value)
  answered = time.perf_counter()
  for row, (query, code) in enumerate(zip(queries, codes, strict=True)):
    print_results(index, query, code, ranking, row, _WIDTH.value)
  print(f"({len(queries)} queries answered in {(answered - opened) * 1000:.0f} ms after "
        f"loading; the index opened in {(opened - start) * 1000:.0f} ms)", file=sys.stderr)


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
