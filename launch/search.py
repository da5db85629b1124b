"""Searches an index by Hamming distance and prints the top K items.

    python -m launch.search --index=runs/snippets16/index.npz --text "football match"
    python -m launch.search --index=INDEX --query-file=queries.txt --k=5
    python -m launch.search --index=INDEX --query-id=12      # an item's own code

Each result line: rank, item id, Hamming distance, label, text.
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
_QUERY_ID = flags.DEFINE_integer("query-id", None, "Query with an indexed item's code.")
_K = flags.DEFINE_integer("k", 10, "Results per query.", lower_bound=1)
flags.mark_flags_as_required(["index"])


def read_queries(path: str) -> list[str]:
  """One query per non-empty line of a UTF-8 file; the file and line named
  when it is not UTF-8."""
  if not os.path.isfile(path):
    raise app.UsageError(f"--query-file={path}: no such file")
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  queries = []
  for number, raw in enumerate(lines, start=1):
    try:
      text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
      raise app.UsageError(f"--query-file={path}:{number}: not UTF-8 text (byte "
                           f"{e.start} of the line): save the file as UTF-8") from e
    if text:
      queries.append(text)
  if not queries:
    raise app.UsageError(f"--query-file={path} holds no query (one per line)")
  return queries


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  given = [f for f in (_TEXT.value, _QUERY_FILE.value, _QUERY_ID.value) if f is not None]
  if len(given) != 1:
    raise app.UsageError("give exactly one of --text, --query-file, --query-id")
  index = index_lib.load(_INDEX.value)
  start = time.perf_counter()
  if _QUERY_ID.value is not None:
    if not 0 <= _QUERY_ID.value < len(index.db_codes):
      raise app.UsageError(f"--query-id={_QUERY_ID.value}: must lie in [0, "
                           f"{len(index.db_codes)})")
    queries, codes = [f"item {_QUERY_ID.value}"], index.db_codes[[_QUERY_ID.value]]
  else:
    if _TEXT.value is not None:
      queries = [_TEXT.value]
    else:
      queries = read_queries(_QUERY_FILE.value)
    vectoriser = index.encoder.vectoriser
    if vectoriser is None:
      raise app.UsageError(f"{_INDEX.value} was not built from text: query it with "
                           "--query-id")
    # Such a query reads as an all-zero input: its code comes from the
    # network's biases alone, so its results say nothing about the text.
    for n in np.flatnonzero(np.diff(vectoriser.counts(queries).indptr) == 0):
      print(f"warning: query {n + 1} ({queries[n][:60]!r}) has no term of the "
            "index's vocabulary", file=sys.stderr)
    codes = index.encoder.encode_texts(queries)
  positions, distances = index.search(codes, _K.value)
  elapsed = time.perf_counter() - start
  for query, code, pos, dist in zip(queries, codes, positions, distances, strict=True):
    print(f"query: {query[:100]}  code: {''.join(map(str, code))}")
    for rank, (p, d) in enumerate(zip(pos, dist, strict=True), start=1):
      text = index.db_texts[p][:90].replace("\n", " ") if index.db_texts else ""
      print(f"{rank:3d}  id {int(index.db_ids[p]):6d}  distance {int(d):2d}  "
            f"{index.label_name(index.db_labels[p]):<28} {text}")
  print(f"({len(queries)} queries answered in {elapsed * 1000:.0f} ms after loading)",
        file=sys.stderr)


def cli(argv=None):
  """Console entry point (see pyproject.toml); `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
