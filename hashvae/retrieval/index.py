"""A self-contained, searchable hash index: one .npz file, loaded without pickle.

It holds a trained run's encoder (parameters and architecture), the fitted
text vectoriser (vocabulary in column order, n-gram range, token rule, stop
words, idf), and the database: bit-packed codes, item ids, labels and texts.
Search ranks by Hamming distance, ties broken by database position, the
order `hashvae.retrieval.metrics.evaluate` uses.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from typing import Optional

import numpy as np
from flax import traverse_util
from sklearn.feature_extraction.text import CountVectorizer

from hashvae import methods
from hashvae.core.models import ModelSpec
from hashvae.data.text import TextVectoriser
from hashvae.retrieval import index_check
from hashvae.retrieval.encoder import Encoder
from hashvae.store import results

FORMAT = "hashvae-index"
VERSION = 2  # 2: the network is rebuilt from its method and ModelSpec
ANALYSER_FIELDS = ("lowercase", "token_pattern", "stop_words", "ngram_range")
# Queries compared with the database at once: at most 256, and fewer for a
# large database, so that a block's [queries, items, bits] comparison stays
# within QUERY_BLOCK_BYTES.
QUERY_BLOCK = 256
QUERY_BLOCK_BYTES = 64 * 2**20


class IndexFormatError(ValueError):
  """The file is not a readable hashvae index of a supported version."""


@dataclasses.dataclass(frozen=True)
class Index:
  meta: dict
  encoder: Encoder
  db_codes: np.ndarray  # [items, bits] uint8 {0, 1}
  db_ids: np.ndarray  # [items] int64
  db_labels: np.ndarray  # [items] or [items, classes]
  db_texts: tuple  # the documents, or () for non-text data

  def label_name(self, label) -> str:
    names = self.meta["class_names"]
    if np.ndim(label) == 0:
      return names[int(label)] if names else str(int(label))
    return ",".join(names[i] if names else str(i) for i in np.flatnonzero(label))

  def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[queries, bits] -> (positions [queries, k], distances [queries, k]),
    nearest first, ties by database position."""
    if k < 1:
      raise ValueError(f"k={k}: at least 1 result per query")
    query_codes = np.asarray(query_codes, np.uint8).reshape(-1, self.db_codes.shape[1])
    k = min(k, len(self.db_codes))
    positions, distances = [], []
    # Blocks of queries: the [queries, items, bits] comparison of all of
    # them at once would take gigabytes for thousands of queries.
    size = int(np.clip(QUERY_BLOCK_BYTES // max(self.db_codes.size, 1), 1, QUERY_BLOCK))
    for start in range(0, len(query_codes), size):
      block = query_codes[start:start + size]
      dist = (block[:, None, :] != self.db_codes[None, :, :]).sum(-1)
      order = np.argsort(dist, axis=1, kind="stable")[:, :k]
      positions.append(order)
      distances.append(np.take_along_axis(dist, order, axis=1))
    if not positions:
      return np.zeros((0, k), np.int64), np.zeros((0, k), np.int64)
    return np.concatenate(positions), np.concatenate(distances)


def build(sweep, run: int, path: str):
  """Writes the index of one run (a row of the sweep's results.csv) of a
  finished sweep (an api.Sweep)."""
  row = sweep.row(run)
  encoder = sweep.encoder(run)
  data = sweep.dataset
  _, db_codes = sweep.codes(run)
  db = data.database
  vec: Optional[TextVectoriser] = data.vectoriser
  meta = dict(format=FORMAT, version=VERSION, run=run, row=row, model=encoder.describe(),
              extra_modules=sweep.config.get("extra_modules", ""),
              class_names=list(data.class_names), dataset=data.name,
              text=None if vec is None else dict(
                  {f: vec.counter.get_params()[f] for f in ANALYSER_FIELDS},
                  tfidf=vec.idf is not None))
  arrays = {f"var/{k}": np.asarray(v) for k, v in
            traverse_util.flatten_dict(encoder.variables, sep="/").items()}
  if vec is not None:
    terms = vec.counter.get_feature_names_out()
    arrays["vocabulary"] = np.asarray(terms, dtype=str)
    if vec.idf is not None:
      arrays["idf"] = vec.idf
  results.write_npz(path, meta=np.array(json.dumps(meta)),
                    db_codes=np.packbits(db_codes, axis=1), db_ids=np.arange(len(db)),
                    db_labels=db.labels, db_texts=np.asarray(db.texts, dtype=str),
                    **arrays)


def load(path: str) -> Index:
  """The index at `path`; IndexFormatError naming what is wrong when it is not
  a readable index of this version, an array is missing, or its arrays
  disagree with each other (lengths, weight shapes, vocabulary)."""
  try:
    index = _load(path)
  except KeyError as e:  # an array or metadata field missing
    raise IndexFormatError(f"{path}: not a complete hashvae index ({e} is missing): "
                           "rebuild it with launch.index") from e
  problems = index_check.loaded_index_problems(index)
  if problems:
    raise IndexFormatError(f"{path}: inconsistent index: {'; '.join(problems)}: "
                           "rebuild it with launch.index")
  return index


def _load(path: str) -> Index:
  try:
    with np.load(path, allow_pickle=False) as f:
      files = {name: f[name] for name in f.files}
  except FileNotFoundError:
    raise
  except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
    raise IndexFormatError(f"{path}: corrupt or truncated index file ({e})") from e
  try:
    meta = json.loads(str(files["meta"]))
  except (KeyError, json.JSONDecodeError) as e:
    raise IndexFormatError(f"{path}: not a hashvae index (no readable metadata)") from e
  if meta.get("format") != FORMAT:
    raise IndexFormatError(f"{path}: not a hashvae index (format {meta.get('format')!r})")
  if meta.get("version") != VERSION:
    raise IndexFormatError(f"{path}: index version {meta.get('version')!r}; this "
                           f"hashvae reads version {VERSION}: rebuild it with launch.index")
  variables = traverse_util.unflatten_dict(
      {tuple(k[4:].split("/")): v for k, v in files.items() if k.startswith("var/")})
  vectoriser = None
  if meta["text"] is not None:
    text = meta["text"]
    vocabulary = {term: i for i, term in enumerate(files["vocabulary"].tolist())}
    counter = CountVectorizer(vocabulary=vocabulary, dtype=np.float32,
                              **{f: text[f] for f in ANALYSER_FIELDS[:3]},
                              ngram_range=tuple(text["ngram_range"]))
    vectoriser = TextVectoriser(counter, files.get("idf"))
  spec = meta["model"]["spec"]
  spec = ModelSpec(**dict(spec, hidden=tuple(spec["hidden"])))
  methods.import_modules(meta.get("extra_modules", ""))  # a user's method registers itself
  encoder = Encoder(meta["model"]["method"], spec, variables, vectoriser)
  codes = np.unpackbits(files["db_codes"], axis=1, count=spec.bits)
  return Index(meta=meta, encoder=encoder, db_codes=codes,
               db_ids=files["db_ids"], db_labels=files["db_labels"],
               db_texts=tuple(files["db_texts"].tolist()))
