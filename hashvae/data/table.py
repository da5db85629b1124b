"""Text tables: one document per row, a text column and a label column.

CSV (a header row, the quoting spreadsheets and pandas write), TSV (the same
with tabs) or JSON lines (one object per line). A multi-label item holds a
list: a JSON list in JSON lines, a separator-joined string ("sport|news") in
CSV and TSV. Documents are vectorised as the Snippets text is (data.text).
Each item keeps an id, so a search result names its row: the value of the
id column (`id_column`, "id" by default) in a file that has one, else its
row number (0-based, in the file's order; header and blank lines not counted).
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
from hashvae.data.dataset import DataError, Dataset, FileSplits
from hashvae.data.text import TextVectoriser, check_read, check_vectorising, text_split

log = logging.getLogger("hashvae")

NAME = "text_table"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclasses.dataclass(frozen=True)
class Table:
  """The documents of one file, with each one's label names (in file order,
  repeats dropped), the line it starts on and its id (its id column's
  value, or its row number)."""

  path: str
  docs: list[str]
  labels: list[tuple[str, ...]]
  lines: list[int]
  ids: list
  numbered: bool  # ids are row numbers (the file has no id column)


@dataclasses.dataclass(frozen=True)
class TextTableSpec(FileSplits):
  """config.data of configs/table.py (a table a file)."""

  name: ClassVar[str] = NAME
  format: str = ""  # "csv", "tsv" or "jsonl"; empty: from each file's extension
  text_column: str = "text"  # column (JSON field) holding the document
  label_column: str = "label"  # column (JSON field) holding its label(s)
  label_separator: str = "|"  # joins several labels in one CSV/TSV cell
  max_features: int = 10000  # vocabulary size cap
  tfidf: bool = False  # input tf-idf (rows L2-normalised) instead of log(1 + tf)
  drop_empty: bool = False  # documents with no vocabulary term: dropped or zero rows
  id_column: str = "id"  # column (JSON field) naming each item, if the file has it

  def __post_init__(self):
    if not isinstance(self.id_column, str):
      checks.refuse(self, "id_column", "a column name (empty: always row numbers)")
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


def _csv_records(path: str, lines, delimiter: str, text_column: str, label_column: str,
                 id_column: str):
  """Yields (line, text, label field, id field or None) per row; the first
  row is the header."""
  reader = csv.reader(lines, delimiter=delimiter)
  header, columns, last, id_at = None, None, 0, None
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
        id_at = header.index(id_column) if id_column in header else None
        continue
      if len(record) != len(header):
        raise DataError(f"{path}:{start}: {len(record)} fields where the header has "
                        f"{len(header)} (an unquoted {delimiter!r} in the text?)")
      yield (start, record[columns[0]], record[columns[1]],
             None if id_at is None else record[id_at])
  except csv.Error as e:  # an unclosed quote, a field over csv's size limit, ...
    raise DataError(f"{path}:{last + 1}: malformed line: {e}") from e


def _jsonl_records(path: str, lines, text_column: str, label_column: str, id_column: str):
  """Yields (line, text, label value, id value or None) per JSON object."""
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
    yield number, record[text_column], record[label_column], record.get(id_column)


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
  columns = (text_column, label_column, spec.id_column or None)
  records = (_jsonl_records(path, lines, *columns) if fmt == "jsonl" else
             _csv_records(path, lines, "\t" if fmt == "tsv" else ",", *columns))
  docs, labels, numbers, ids = [], [], [], []
  for number, text, label, item_id in records:
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
    ids.append(item_id)
  check_read(path, docs, undecodable)
  ids = item_ids(path, spec.id_column, ids, numbers)
  numbered = ids is None
  return Table(path, docs, labels, numbers, list(range(len(docs))) if numbered else ids,
               numbered)


def item_ids(path: str, column: str, values: list, lines: list[int]):
  """The id column's values, or None (number the items by row) when no item
  has one. Ids only name search results, so a table that loaded before
  there were ids still loads: an item with no usable id (missing, empty,
  not a string or an integer) numbers the whole file by row, and repeated
  ids are kept; both with a warning naming the line."""
  if all(v is None for v in values):
    return None
  seen = {}
  for value, line in zip(values, lines, strict=True):
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
      log.warning("%s:%d: no usable id in %r (%r): the items of this file are numbered "
                  "by row instead", path, line, column, value)
      return None
    if value in seen:
      log.warning("%s:%d: the id %r repeats that of line %d: search results will show "
                  "both under it", path, line, value, seen[value])
    seen.setdefault(value, line)
  return values


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
  label_ids = [encode_labels(t, classes, multilabel) for t in tables]
  # Every training document (train and validation: the database), as
  # vectorise_corpus fits on all of its training documents.
  vectoriser = TextVectoriser.fit(train.docs + (held.docs if held else []),
                                  spec.max_features, spec.tfidf, NAME)
  def split(docs, labels, ids, part):
    return text_split(vectoriser, docs, labels, f"{NAME}/{part}", spec.drop_empty, ids)

  if held is not None:
    held_ids = validation_ids(train, held)
    parts = (split(train.docs, label_ids[0], train.ids, "train"),
             split(held.docs, label_ids[2], held_ids, "validation"))
  else:  # the order and draw of vectorise_corpus, so the splits are the same
    order = np.arange(len(train.docs))
    if fraction > 0:
      fit, val = train_test_split(order, test_size=fraction, random_state=spec.split_seed)
    else:
      fit, val = order, order[:0]
    pick = lambda values, idx: [values[i] for i in idx]
    parts = (split(pick(train.docs, fit), label_ids[0][fit], pick(train.ids, fit), "train"),
             split(pick(train.docs, val), label_ids[0][val], pick(train.ids, val),
                   "validation"))
  return Dataset(name=NAME, train=parts[0], validation=parts[1],
                 test=split(test.docs, label_ids[1], test.ids, "test"),
                 num_classes=len(classes), class_names=classes, vectoriser=vectoriser)


def validation_ids(train: Table, held: Table) -> list:
  """A separate validation file's ids, told apart from the training file's:
  its row numbers are prefixed with its file name ("val.csv:3"); id column
  values are kept (one the training file also holds, with a warning)."""
  if held.numbered:
    name = os.path.basename(held.path)
    return [f"{name}:{row}" for row in held.ids]
  both = set(held.ids) & set(train.ids)
  if both and not train.numbered:
    log.warning("%s: the id %r is also in %s: search results will show both items under "
                "it", held.path, sorted(map(str, both))[0], train.path)
  return held.ids
