"""Preprocessing recipes: a published corpus -> the files a config reads.

Each recipe holds validation out of the published training split (a seeded
draw) and fits whatever it fits (vocabulary, idf, the feature choice) on
the remaining training documents only: never on validation, never on the
test split, which stays the published one.

| recipe | terms | values | documents dropped | layout |
|---|---|---|---|---|
| vdsh_tfidf | 10,000 most frequent, English stop words out | tf-idf, rows L2-normalised | those with no term | VDSH .mat |
| count_stop_df | 10,000 most frequent of those in 3 or more training documents and at most 80% of them, stop words out | term counts | those with fewer than 5 terms | VDSH .mat |
| raw | none: the texts (clipped to 131,072 characters) | none | empty texts | CSV tables |
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Union

import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer

from hashvae.data.corpora.output import mat_bytes, table_bytes
from hashvae.data.corpora.readers import Documents, Vectors
from hashvae.data.dataset import DataError, row_of_entry, with_values
from hashvae.data.text import TOKEN_PATTERN, TextVectoriser

SPLITS = ("train", "validation", "test")
MAX_TERMS = 10000
# Python's csv module (which the table loader reads with) refuses a field
# longer than its default limit; the few longer texts (20 Newsgroups posts
# holding uuencoded files) are clipped to it.
TABLE_FIELD_LIMIT = 131072


@dataclasses.dataclass(frozen=True)
class Built:
  """What a recipe made: {file name: bytes}, items per split (kept and
  dropped), the vocabulary size (0 for texts) and how to load it."""

  files: dict[str, bytes]
  counts: dict[str, dict[str, int]]
  vocabulary_size: int
  layout: str  # "vdsh_mat" or "text_table"


def hold_out(items: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train rows, validation rows) of the published training split: a
  seeded draw of round(fraction * items) rows for validation; both sorted,
  so the file order is kept."""
  if not 0 <= fraction < 1:
    raise DataError(f"validation_fraction={fraction!r}: a fraction in [0, 1)")
  order = np.random.default_rng(seed).permutation(items)
  held = int(round(fraction * items))
  return np.sort(order[held:]), np.sort(order[:held])


def one_hot(labels: list[tuple[str, ...]], classes: tuple[str, ...]) -> np.ndarray:
  """[items, classes] uint8 one- or multi-hot rows (the gnd_* layout)."""
  index = {c: i for i, c in enumerate(classes)}
  hot = np.zeros((len(labels), len(classes)), np.uint8)
  for item, names in enumerate(labels):
    hot[item, [index[n] for n in names]] = 1
  return hot


def _texts_by_split(docs: Documents, fit, val):
  pick = lambda values, rows: [values[i] for i in rows]
  return {"train": (pick(docs.train.texts, fit), pick(docs.train.labels, fit),
                    pick(docs.train.ids, fit)),
          "validation": (pick(docs.train.texts, val), pick(docs.train.labels, val),
                         pick(docs.train.ids, val)),
          "test": (docs.test.texts, docs.test.labels, docs.test.ids)}


def lines_bytes(values) -> bytes:
  return "".join(f"{v}\n" for v in values).encode("utf-8")


def _mat(corpus: str, recipe: str, rows: dict, labels: dict, ids: dict, classes,
         terms) -> dict[str, bytes]:
  """The VDSH layout: train/cv/test [items, terms] and gnd_* [items, classes];
  beside it the terms in column order (vocabulary.txt) and each split's
  document ids in row order (ids_SPLIT.txt), naming the published rows."""
  keys = {"train": "train", "validation": "cv", "test": "test"}
  arrays = {}
  for split, key in keys.items():
    arrays[key] = scipy.sparse.csc_matrix(rows[split], dtype=np.float64)
    arrays[f"gnd_{key}"] = one_hot(labels[split], classes)
  files = {f"{corpus}.{recipe}.mat": mat_bytes(arrays), "vocabulary.txt": lines_bytes(terms)}
  files.update({f"ids_{split}.txt": lines_bytes(ids[split]) for split in SPLITS})
  return files


def _bag_of_words(corpus: str, recipe: str, docs: Documents, fit, val, counter,
                  min_terms: int, values: Callable) -> Built:
  """Fits `counter` on the training documents, keeps the documents with at
  least `min_terms` vocabulary terms (counted with repeats) and stores
  `values(counts)` [items, terms]."""
  parts = _texts_by_split(docs, fit, val)
  try:
    counter.fit(parts["train"][0])
  except ValueError as e:  # scikit-learn: an empty vocabulary, df bounds that clash
    raise DataError(f"{corpus}: {recipe}: cannot build a vocabulary: {e}") from e
  transform = values(counter)
  rows, labels, ids, counts = {}, {}, {}, {}
  for split in SPLITS:
    texts, names, doc_ids = parts[split]
    tf = counter.transform(texts).astype(np.float32)
    keep = np.asarray(tf.sum(axis=1)).ravel() >= min_terms
    rows[split] = transform(tf[keep])
    labels[split] = [n for n, k in zip(names, keep, strict=True) if k]
    ids[split] = [d for d, k in zip(doc_ids, keep, strict=True) if k]
    counts[split] = {"items": int(keep.sum()), "dropped": int((~keep).sum())}
  terms = counter.get_feature_names_out()
  return Built(_mat(corpus, recipe, rows, labels, ids, docs.classes, terms), counts,
               len(terms), "vdsh_mat")


def smooth_idf(counts) -> np.ndarray:
  """[terms] log((1 + docs) / (1 + df)) + 1 of training counts [docs, terms]."""
  df = np.bincount(scipy.sparse.csr_matrix(counts).indices, minlength=counts.shape[1])
  return (np.log((1 + counts.shape[0]) / (1 + df)) + 1).astype(np.float32)


def vdsh_tfidf(corpus: str, data: Union[Documents, Vectors], fit, val) -> Built:
  """10,000 tf-idf terms, as the VDSH releases hold (see the module doc)."""
  if isinstance(data, Vectors):
    return _vectors_tfidf(corpus, data, fit, val)
  counter = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english",
                            max_features=MAX_TERMS, dtype=np.float32)
  def values(fitted):
    texts = [data.train.texts[i] for i in fit]
    vectoriser = TextVectoriser(fitted, smooth_idf(fitted.transform(texts)))
    return lambda tf: vectoriser.rows(tf)[0]  # tf * idf, rows L2-normalised
  return _bag_of_words(corpus, "vdsh_tfidf", data, fit, val, counter, 1, values)


def count_stop_df(corpus: str, data: Union[Documents, Vectors], fit, val,
                  min_terms: int = 5) -> Built:
  """Term counts of 10,000 terms with document-frequency bounds, and a
  document-length filter (see the module doc)."""
  if isinstance(data, Vectors):
    raise DataError(f"{corpus}: count_stop_df needs texts; this release holds tf-idf "
                    "vectors (use --recipe=vdsh_tfidf)")
  counter = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english", min_df=3,
                            max_df=0.8, max_features=MAX_TERMS, dtype=np.float32)
  return _bag_of_words(corpus, "count_stop_df", data, fit, val, counter, min_terms,
                       lambda fitted: lambda tf: tf)


def raw(corpus: str, data: Union[Documents, Vectors], fit, val) -> Built:
  """The texts as train/validation/test tables (configs/table.py)."""
  if isinstance(data, Vectors):
    raise DataError(f"{corpus}: raw needs texts; this release holds tf-idf vectors "
                    "(use --recipe=vdsh_tfidf)")
  files, counts = {}, {}
  for split, (texts, labels, ids) in _texts_by_split(data, fit, val).items():
    keep = [i for i, text in enumerate(texts) if text.strip()]
    clipped = [texts[i][:TABLE_FIELD_LIMIT] for i in keep]
    files[f"{split}.csv"] = table_bytes([ids[i] for i in keep], clipped,
                                        [labels[i] for i in keep])
    counts[split] = {"items": len(keep), "dropped": len(texts) - len(keep),
                     "clipped": sum(len(texts[i]) > TABLE_FIELD_LIMIT for i in keep)}
  return Built(files, counts, 0, "text_table")


def _vectors_tfidf(corpus: str, data: Vectors, fit, val) -> Built:
  """The published tf-idf restricted to the 10,000 features present in
  the most training documents (ties: the lower index), rows L2-normalised
  again; rows left with no feature are dropped."""
  train = data.train[fit]
  df = np.bincount(train.indices, minlength=train.shape[1])
  chosen = np.sort(np.argsort(-df, kind="stable")[:MAX_TERMS])
  source = {"train": (train, data.train_labels, data.train_ids, fit),
            "validation": (data.train[val], data.train_labels, data.train_ids, val),
            "test": (data.test, data.test_labels, data.test_ids,
                     np.arange(data.test.shape[0]))}
  rows, labels, ids, counts = {}, {}, {}, {}
  for split, (matrix, names, doc_ids, picked) in source.items():
    matrix = scipy.sparse.csr_matrix(matrix[:, chosen])
    matrix.eliminate_zeros()
    keep = np.diff(matrix.indptr) > 0
    matrix = matrix[keep]
    norms = np.sqrt(np.bincount(row_of_entry(matrix), weights=matrix.data ** 2,
                                minlength=matrix.shape[0]))
    rows[split] = with_values(matrix, matrix.data / norms[row_of_entry(matrix)])
    labels[split] = [names[i] for i, k in zip(picked, keep, strict=True) if k]
    ids[split] = [doc_ids[i] for i, k in zip(picked, keep, strict=True) if k]
    counts[split] = {"items": int(keep.sum()), "dropped": int((~keep).sum())}
  # The release numbers its features from 1; the vocabulary names them so.
  return Built(_mat(corpus, "vdsh_tfidf", rows, labels, ids, data.classes, chosen + 1),
               counts, len(chosen), "vdsh_mat")


RECIPES: dict[str, Callable] = {"vdsh_tfidf": vdsh_tfidf, "count_stop_df": count_stop_df,
                                "raw": raw}
