"""Writes a search index (hashvae.retrieval.index) of one run of a finished
sweep. Reads the run's trained variables through jax; the index it writes
is answered without it.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from hashvae.retrieval import index_file, query_text
from hashvae.retrieval.numpy_encoder import NotIndexableError
from hashvae.store import results


def id_arrays(ids: tuple, items: int) -> tuple[str, dict]:
  """(kind, arrays) of the database's ids: "row" (int64 row numbers),
  "column" (an id column's values, as text) or, when the loader gave none,
  "position" (the database positions)."""
  if not ids:
    return "position", dict(db_ids=np.arange(items, dtype=np.int64))
  if all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
    return "row", dict(db_ids=np.asarray(ids, np.int64))
  data, offsets = index_file.string_arrays([str(i) for i in ids])
  return "column", dict(db_ids=data, db_ids_offsets=offsets)


def text_arrays(vectoriser, texts) -> tuple[dict, dict]:
  """(analyser settings, arrays) of a text dataset's vectoriser and texts."""
  try:
    settings = query_text.settings(vectoriser.counter)
  except ValueError as e:
    raise NotIndexableError(f"{e}: this run's text cannot be indexed") from e
  settings["tfidf"] = vectoriser.idf is not None
  arrays = {}
  arrays["db_texts"], arrays["db_texts_offsets"] = index_file.string_arrays(texts)
  terms = vectoriser.counter.get_feature_names_out().tolist()
  arrays["vocabulary"], arrays["vocabulary_offsets"] = index_file.string_arrays(terms)
  if vectoriser.idf is not None:
    arrays["idf"] = np.asarray(vectoriser.idf, np.float32)
  return settings, arrays


def build(sweep, run: int, path: str, header: dict):
  """Writes the index of row `run` of `sweep` (an api.Sweep) to `path`,
  atomically (a temporary file renamed into place); `header` holds the
  format and version."""
  row = sweep.row(run)
  try:
    encoder = sweep.encoder(run)
  except ValueError as e:  # a fitted method: no network to encode a query
    raise NotIndexableError(str(e)) from e
  layout, arrays = encoder.numpy_arrays()
  data = sweep.dataset
  _, db_codes = sweep.codes(run)
  db = data.database
  ids_kind, id_part = id_arrays(db.ids, len(db))
  arrays.update(id_part, db_codes=np.packbits(db_codes, axis=1),
                db_labels=np.asarray(db.labels))
  text = None
  if data.vectoriser is not None:
    text, text_part = text_arrays(data.vectoriser, db.texts)
    arrays.update(text_part)
  else:
    arrays["db_texts"] = np.zeros(0, np.uint8)
  meta = dict(run=run, row=row, method=encoder.method,
              spec=dataclasses.asdict(encoder.spec), workdir=os.path.abspath(sweep.path),
              dataset=data.name, class_names=list(data.class_names), items=len(db),
              bits=encoder.spec.bits, dims=encoder.spec.dims, ids=ids_kind,
              encoder=layout, text=text)
  with results.atomic_path(path) as tmp:
    index_file.write(tmp, dict(header, meta=meta), arrays)
