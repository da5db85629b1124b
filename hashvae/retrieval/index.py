"""A self-contained, searchable hash index: one memory-mapped file.

It holds a trained run's encoder as numpy arrays (the MLP's kernels and
biases, batch norm's averages and the chain of heads after the MLP:
hashvae.retrieval.numpy_encoder), the fitted text analyser (settings in the
header, vocabulary in column order, idf), and the database: bit-packed
codes, labels, each item's id in the user's data and its text. The container (hashvae.retrieval.index_file) is a
JSON header and raw arrays mapped with np.memmap: opening reads the header
and the offsets arrays (checked), and answering a query reads the pages it touches (its terms' kernel
rows, the codes, the shown results' texts). Answering imports numpy, never
jax, flax, optax or scikit-learn.

Search ranks by Hamming distance, ties broken by database position, the
order `hashvae.retrieval.metrics.evaluate` uses.

Version 3 (this one) replaced the .npz of versions 1 and 2, which held the
texts as fixed-width unicode and had to be read whole; such a file is
refused with the command that rebuilds it.

The encoder's layout gained `chain` (the heads and their activations) within
version 3: a file without it is read as one head, as it was written; a
chain of more than one head is stored under names an older hashvae does not
know, so it refuses such a file instead of answering wrongly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional

import numpy as np

from hashvae.retrieval import index_check, index_file, ranking
from hashvae.retrieval.index_file import StringTable
from hashvae.retrieval.multi_index import MultiIndex
from hashvae.retrieval.numpy_encoder import NotIndexableError, NumpyEncoder
from hashvae.retrieval.query_text import QueryVectoriser

FORMAT = "hashvae-index"
VERSION = 3  # 3: one memory-mapped file; numpy encoder; ids from the user's data
SUFFIX = ".hvi"
REBUILD = "python -m launch.index --workdir=SWEEP_FOLDER --run={run} --out={out}"

__all__ = ["FORMAT", "VERSION", "SUFFIX", "Index", "IndexFormatError", "NoKnownWordError",
           "NotIndexableError", "build", "load"]


class IndexFormatError(ValueError):
  """The file is not a readable hashvae index of a supported version."""


class NoKnownWordError(ValueError):
  """A query holds no term of the index's vocabulary: its input row would be
  all zero, its code the network's biases alone, its results meaningless."""

  def __init__(self, number: int, query: str):
    super().__init__(f"query {number} ({query[:60]!r}) has no word of the index's "
                     "vocabulary")
    self.number, self.query = number, query


@dataclasses.dataclass(frozen=True)
class Index:
  """An opened index: `arrays` are read-only np.memmap views of the file."""

  path: str
  meta: dict
  arrays: dict

  @property
  def bits(self) -> int:
    return self.meta["bits"]

  @property
  def packed_codes(self) -> np.ndarray:
    """[items, ceil(bits / 8)] uint8, np.packbits of the codes along bits."""
    return self.arrays["db_codes"]

  @property
  def db_codes(self) -> np.ndarray:
    """[items, bits] uint8 {0, 1} (unpacked: a copy)."""
    return np.unpackbits(self.packed_codes, axis=1, count=self.bits)

  @functools.cached_property
  def multi_index(self) -> MultiIndex:
    """The substring tables of the search (built once, on first search)."""
    return MultiIndex.build(self.db_codes)

  @property
  def db_labels(self) -> np.ndarray:
    """[items] class ids or [items, classes] multi-hot."""
    return self.arrays["db_labels"]

  @functools.cached_property
  def db_ids(self):
    """[items] each item's id: int64 row numbers, or a StringTable of the
    id column's values (`item_id` gives either as text)."""
    if "db_ids_offsets" in self.arrays:
      return StringTable(self.arrays["db_ids"], self.arrays["db_ids_offsets"])
    return self.arrays["db_ids"]

  @functools.cached_property
  def db_texts(self):
    """A StringTable of the items' texts, or () for non-text data."""
    if self.meta["text"] is None:
      return ()
    return StringTable(self.arrays["db_texts"], self.arrays["db_texts_offsets"])

  @functools.cached_property
  def encoder(self) -> NumpyEncoder:
    return NumpyEncoder.from_layout(self.arrays, self.meta["encoder"])

  @functools.cached_property
  def vectoriser(self) -> Optional[QueryVectoriser]:
    if self.meta["text"] is None:
      return None
    vocabulary = StringTable(self.arrays["vocabulary"], self.arrays["vocabulary_offsets"])
    return QueryVectoriser(self.meta["text"], vocabulary, self.arrays.get("idf"))

  def item_id(self, position) -> str:
    return str(self.db_ids[int(position)])

  def first_line(self, position, width: int = 100) -> str:
    """The item's first non-blank line, cut to `width` characters ("" for
    non-text data); reads a few kilobytes of a long text, not all of it."""
    if not self.db_texts:
      return ""
    text, whole = self.db_texts.prefix(position, 16 * width)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not whole and (not lines or (len(lines) == 1 and len(lines[0]) < width)):
      # the first line may run on past the part read: read it all
      lines = [" ".join(line.split()) for line in self.db_texts[position].splitlines()]
      lines = [line for line in lines if line]
    line = lines[0] if lines else ""
    return line if len(line) <= width else line[:width - 3] + "..."

  def label_name(self, label) -> str:
    names = self.meta["class_names"]
    if np.ndim(label) == 0:
      return names[int(label)] if names else str(int(label))
    return ",".join(names[i] if names else str(i) for i in np.flatnonzero(label))

  def text_scores(self, texts) -> np.ndarray:
    """Documents -> [docs, bits] float32 code scores (the codes are
    1[score > 0]), as the training data was vectorised; NoKnownWordError
    (numbered from 1) for a document with no vocabulary term."""
    if self.vectoriser is None:
      raise ValueError("this index was not built from text: query it by item")
    texts = list(texts)
    indptr, indices, values = self.vectoriser.rows(texts)
    empty = np.flatnonzero(np.diff(indptr) == 0)
    if len(empty):
      raise NoKnownWordError(int(empty[0]) + 1, texts[empty[0]])
    return self.encoder.sparse_scores(indptr, indices, values)

  def encode_texts(self, texts) -> np.ndarray:
    """Documents -> [docs, bits] uint8 codes (see text_scores)."""
    return self.encoder.codes(self.text_scores(texts))

  def ranked(self, query_codes, k: int, query_scores=None,
             by: str = "hamming") -> ranking.Ranking:
    """[queries, bits] {0, 1} -> the top k per query, nearest first, ties by
    database position, with each query's count of items at every distance;
    with the queries' code scores, `by` may be a ranking of rerank.RANKINGS."""
    query_codes = np.asarray(query_codes, np.uint8).reshape(-1, self.bits)
    return ranking.rank(query_codes, self.multi_index, k, query_scores, by)

  def search(self, query_codes, k: int) -> tuple[np.ndarray, np.ndarray]:
    """[queries, bits] -> (positions [queries, k], distances [queries, k])."""
    result = self.ranked(query_codes, k)
    return result.positions, result.distances


def build(sweep, run: int, path: str):
  """Writes the index of one run (a row of the sweep's results.csv) of a
  finished sweep (an api.Sweep) to `path`, atomically; NotIndexableError
  for a run whose codes no stored encoder computes."""
  from hashvae.retrieval import index_build  # jax: never on the search path
  index_build.build(sweep, run, path, dict(format=FORMAT, version=VERSION))


def load(path: str) -> Index:
  """The index at `path`, its arrays memory-mapped; IndexFormatError naming
  what is wrong when it is not a readable index of this version, an array
  is missing, or its arrays disagree with each other."""
  if not os.path.isfile(path):
    open(path, "rb").close()  # FileNotFoundError / IsADirectoryError, named
  try:
    header = index_file.read_header(path)
  except index_file.NpzFileError as e:
    raise IndexFormatError(_old_format_message(path)) from e
  except index_file.ContainerError as e:
    raise IndexFormatError(f"{path}: {e}") from e
  if header.get("format") != FORMAT:
    raise IndexFormatError(f"{path}: not a hashvae index (format {header.get('format')!r})")
  if header.get("version") != VERSION:
    raise IndexFormatError(f"{path}: index version {header.get('version')!r}; this "
                           f"hashvae reads version {VERSION}: rebuild it with launch.index")
  try:
    arrays = index_file.map_arrays(path, header)
  except index_file.ContainerError as e:
    raise IndexFormatError(f"{path}: {e}") from e
  meta = header.get("meta") or {}
  missing = index_check.missing_arrays(dict(arrays, meta=meta))
  if missing:
    raise IndexFormatError(f"{path}: not a complete hashvae index ({missing[0]!r} is "
                           "missing): rebuild it with launch.index")
  index = Index(path, meta, arrays)
  try:
    problems = index_check.loaded_index_problems(index)
  except (KeyError, TypeError) as e:  # a header field or array missing
    raise IndexFormatError(f"{path}: not a complete hashvae index ({e} is missing): "
                           "rebuild it with launch.index") from e
  if problems:
    raise IndexFormatError(f"{path}: inconsistent index: {'; '.join(problems)}: "
                           "rebuild it with launch.index")
  return index


def _old_format_message(path: str) -> str:
  """The refusal of a version 1 or 2 index (.npz), with the command that
  rebuilds it (its run number when the archive's metadata says it)."""
  run = "RUN"
  try:
    with np.load(path, allow_pickle=False) as f:
      run = json.loads(str(f["meta"])).get("run", run)
  except Exception:  # noqa: BLE001 (a damaged old file still gets the command)
    pass
  stem = os.path.splitext(path)[0]
  return (f"{path} is an index of the old .npz format (version 2 or before), which "
          f"this hashvae no longer reads: rebuild it with "
          f"{REBUILD.format(run=run, out=stem + SUFFIX)}")
