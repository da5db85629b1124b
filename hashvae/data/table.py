"""Text tables: one document per row, a text column and a label column.

CSV (a header row, the quoting spreadsheets and pandas write), TSV (the same
with tabs) or JSON lines (one object per line). A multi-label item holds a
list: a JSON list in JSON lines, a separator-joined string ("sport|news") in
CSV and TSV. Documents are vectorised as the Snippets text is (data.text).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from typing import ClassVar

import numpy as np
from sklearn.model_selection import train_test_split

from hashvae.data import checks
from hashvae.data.dataset import DataError, Dataset
from hashvae.data.text import TextVectoriser, check_read, check_vectorising, text_split

log = logging.getLogger("hashvae")

NAME = "text_table"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclasses.dataclass(frozen=True)
class Table:
  """The documents of one file, with each one's label names (in file order,
  repeats dropped) and the line it starts on."""

  path: str
  docs: list[str]
  labels: list[tuple[str, ...]]
  lines: list[int]


@dataclasses.dataclass(frozen=True)
class TextTableSpec:
  """config.data of configs/table.py."""

  name: ClassVar[str] = NAME
  path: str = ""  # the training table (also the database)
  test_path: str = ""  # the queries
  validation_path: str = ""  # optional; unset, validation_fraction of path
  validation_fraction: float = 0.1  # of the training documents, held out as validation
  split_seed: int = 0  # the validation split
  format: str = ""  # "csv", "tsv" or "jsonl"; empty: from each file's extension
  text_column: str = "text"  # column (JSON field) holding the document
  label_column: str = "label"  # column (JSON field) holding its label(s)
  label_separator: str = "|"  # joins several labels in one CSV/TSV cell
  max_features: int = 10000  # vocabulary size cap
  tfidf: bool = False  # input tf-idf (rows L2-normalised) instead of log(1 + tf)
  drop_empty: bool = False  # documents with no vocabulary term: dropped or zero rows

  def __post_init__(self):
    check_vectorising(self, "documents")
    checks.check_choice(self, "format", ("",) + tuple(FORMATS.values()),
                        f"one of {sorted(FORMATS.values())}, or empty to read it from "
                        "the extension")
    checks.check_flag(self, "tfidf")
    checks.check_flag(self, "drop_empty")


def table_format(path: str, configured: str) -> str:
  """"csv", "tsv" or "jsonl": `configured` when set, else from the extension."""
  if configured:
    return configured  # TextTableSpec has checked it
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise DataError(f"{NAME}: cannot tell the format of {path} from its extension "
                    f"{ext!r}: name it {', '.join(FORMATS)} or set --config.data.format")
  return FORMATS[ext]


def _decoded(path: str, undecodable: list[int]):
  """The file's lines as text, each ending in its newline; bytes that are not
  UTF-8 are read as U+FFFD and their line numbers collected."""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        line = raw.decode("utf-8", errors="replace")
        undecodable.append(number)
      yield line.removeprefix("\ufeff") if number == 1 else line  # a spreadsheet's BOM


def _csv_records(path: str, lines, delimiter: str, text_column: str, label_column: str):
  """Yields (line, text, label field) per row; the first row is the header."""
  reader = csv.reader(lines, delimiter=delimiter)
  header, columns, last = None, None, 0
  try:
    for record in reader:
      start, last = last + 1, reader.line_num  # a quoted field may span lines
      if not record:
        continue  # a blank line
      if header is None:
        header = [name.strip() for name in record]
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
          raise DataError(f"{path}:{start}: no column {missing[0]!r} in the header "
                          f"(columns: {header}); set --config.data.text_column and "
                          "--config.data.label_column")
        columns = (header.index(text_column), header.index(label_column))
        continue
      if len(record) != len(header):
        raise DataError(f"{path}:{start}: {len(record)} fields where the header has "
                        f"{len(header)} (an unquoted {delimiter!r} in the text?)")
      yield start, record[columns[0]], record[columns[1]]
  except csv.Error as e:  # an unclosed quote, a field over csv's size limit, ...
    raise DataError(f"{path}:{last + 1}: malformed line: {e}") from e


def _jsonl_records(path: str, lines, text_column: str, label_column: str):
  """Yields (line, text, label value) per JSON object."""
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(record, dict):
      raise DataError(f"{path}:{number}: expected a JSON object with fields "
                      f"{text_column!r} and {label_column!r}, got {type(record).__name__}")
    for field in (text_column, label_column):
      if field not in record:
        raise DataError(f"{path}:{number}: no field {field!r} (fields: {sorted(record)[:10]})")
    yield number, record[text_column], record[label_column]


def _label_names(where: str, value, separator: str) -> tuple[str, ...]:
  """A label cell -> its names: a JSON list, or a string split on `separator`."""
  if isinstance(value, str):
    names = value.split(separator) if separator else [value]
  elif isinstance(value, list):
    names = value
  else:
    names = [value]
  if not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
    raise DataError(f"{where}: label {value!r}: a string or an integer, or a list of them")
  names = [str(n).strip() for n in names]
  if not any(names):
    raise DataError(f"{where}: an item with no label")
  if not all(names):
    raise DataError(f"{where}: an empty label name in {value!r}")
  return tuple(dict.fromkeys(names))  # repeats dropped, order kept


def read_table(path: str, spec: TextTableSpec) -> Table:
  """Reads one CSV, TSV or JSON lines file of `spec.text_column` and
  `spec.label_column`; every problem names the file and line."""
  if not path or not os.path.isfile(path):
    raise DataError(f"{NAME}: data file not found: {path!r}")
  fmt = table_format(path, spec.format)
  text_column, label_column = spec.text_column, spec.label_column
  undecodable = []
  lines = _decoded(path, undecodable)
  records = (_jsonl_records(path, lines, text_column, label_column) if fmt == "jsonl" else
             _csv_records(path, lines, "\t" if fmt == "tsv" else ",", text_column,
                          label_column))
  docs, labels, numbers = [], [], []
  for number, text, label in records:
    where = f"{path}:{number}"
    if not isinstance(text, str):
      raise DataError(f"{where}: the {text_column!r} field is {type(text).__name__}, "
                      "not text")
    if not text.strip():
      raise DataError(f"{where}: an empty document (no text in {text_column!r})")
    separator = spec.label_separator if fmt != "jsonl" else ""
    labels.append(_label_names(where, label, separator))
    docs.append(text)
    numbers.append(number)
  check_read(path, docs, undecodable)
  return Table(path, docs, labels, numbers)


def encode_labels(table: Table, classes: tuple[str, ...], multilabel: bool) -> np.ndarray:
  """[items] int32 class indices, or [items, classes] uint8 multi-hot rows;
  a label not among `classes` (the training labels) is refused, naming the
  first line holding one."""
  index = {c: i for i, c in enumerate(classes)}
  for item, names in enumerate(table.labels):
    unknown = [n for n in names if n not in index]
    if unknown:
      raise DataError(f"{table.path}:{table.lines[item]}: labels {unknown} do not occur "
                      f"in the training data (known: {list(classes)})")
  if not multilabel:
    return np.array([index[names[0]] for names in table.labels], np.int32)
  hot = np.zeros((len(table.labels), len(classes)), np.uint8)
  for item, names in enumerate(table.labels):
    hot[item, [index[n] for n in names]] = 1
  return hot


def load_text_table(spec: TextTableSpec) -> Dataset:
  """`spec.path` (train), `spec.test_path`, and `spec.validation_path`
  or else `spec.validation_fraction` of train (drawn with
  `spec.split_seed`, as data.text.vectorise_corpus draws it).

  The vocabulary is fitted on the training documents (train and validation:
  the retrieval database), never on the queries; input log(1 + tf), or
  tf-idf with `spec.tfidf`; target tf normalised per row. Multi-label
  when any item holds more than one label.
  """
  if not spec.path or not spec.test_path:
    raise DataError(f"{NAME}: set --config.data.path (training table) and "
                    "--config.data.test_path (queries)")
  fraction = spec.validation_fraction
  train = read_table(spec.path, spec)
  test = read_table(spec.test_path, spec)
  held = read_table(spec.validation_path, spec) if spec.validation_path else None
  tables = [t for t in (train, test, held) if t is not None]
  multilabel = any(len(names) > 1 for t in tables for names in t.labels)
  classes = tuple(sorted({n for names in train.labels for n in names}))
  ids = [encode_labels(t, classes, multilabel) for t in tables]
  # Every training document (train and validation: the database), as
  # vectorise_corpus fits on all of its training documents.
  vectoriser = TextVectoriser.fit(train.docs + (held.docs if held else []),
                                  spec.max_features, spec.tfidf, NAME)
  split = lambda docs, label_ids, part: text_split(vectoriser, docs, label_ids,
                                                   f"{NAME}/{part}", spec.drop_empty)
  if held is not None:
    parts = (split(train.docs, ids[0], "train"), split(held.docs, ids[2], "validation"))
  else:  # the order and draw of vectorise_corpus, so the splits are the same
    order = np.arange(len(train.docs))
    if fraction > 0:
      fit, val = train_test_split(order, test_size=fraction, random_state=spec.split_seed)
    else:
      fit, val = order, order[:0]
    pick = lambda idx: [train.docs[i] for i in idx]
    parts = (split(pick(fit), ids[0][fit], "train"), split(pick(val), ids[0][val], "validation"))
  return Dataset(name=NAME, train=parts[0], validation=parts[1],
                 test=split(test.docs, ids[1], "test"), num_classes=len(classes),
                 class_names=classes, vectoriser=vectoriser)
