"""Reading the published releases into documents (or, for RCV1, vectors).

Formats: the CSV releases of the classification corpora (one row a
document, `class,field,field...`, no header, every field quoted as needed;
read from a tar.gz or from loose files), the 20 Newsgroups "bydate" posts
(tar.gz), and the LYRL2004 RCV1-v2 vectors (`docid index:value ...`) with
their topic file. A file that ends early or a row with the wrong number of
fields is one DataError naming the file and line.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import io
import tarfile
import zlib

import numpy as np
import scipy.sparse
from sklearn.datasets import load_svmlight_files

from hashvae.data.dataset import DataError
from hashvae.data.newsgroups import _posts_from_tar, body


@dataclasses.dataclass(frozen=True)
class Part:
  """The documents of one published split, in file order: text, label
  names, and an id naming where each came from."""

  texts: list[str]
  labels: list[tuple[str, ...]]
  ids: list[str]

  def __len__(self) -> int:
    return len(self.texts)


@dataclasses.dataclass(frozen=True)
class Documents:
  """A text corpus as published: its train and test splits and class names."""

  train: Part
  test: Part
  classes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Vectors:
  """A corpus published as vectors: [items, features] CSR per split, each
  item's label names and document id."""

  train: scipy.sparse.csr_matrix
  test: scipy.sparse.csr_matrix
  train_labels: list[tuple[str, ...]]
  test_labels: list[tuple[str, ...]]
  train_ids: list[str]
  test_ids: list[str]
  classes: tuple[str, ...]


@contextlib.contextmanager
def reading(corpus: str, path: str):
  """Turns the errors of a file cut short or damaged into one DataError."""
  try:
    yield
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, csv.Error,
          UnicodeDecodeError, OSError) as e:
    raise DataError(f"{corpus}: cannot read {path}: {type(e).__name__}: {e} (a truncated "
                    "or damaged file?)") from e


def class_rows(corpus: str, where: str, stream, fields: int,
               classes: tuple[str, ...]) -> Part:
  """Rows `class,text fields...` (class 1..len(classes)); the text fields
  joined by a space, the release's escaped newlines (a backslash and n)
  read as spaces."""
  texts, labels, ids = [], [], []
  reader = csv.reader(stream)
  for row in reader:
    line = reader.line_num
    if len(row) != fields:
      raise DataError(f"{corpus}: {where}:{line}: {len(row)} fields where the release "
                      f"has {fields} (class, then the text fields): a truncated or "
                      "damaged file?")
    if not row[0].isdigit() or not 1 <= int(row[0]) <= len(classes):
      raise DataError(f"{corpus}: {where}:{line}: class {row[0]!r} is not one of "
                      f"1..{len(classes)}")
    text = " ".join(f.replace("\\n", " ").strip() for f in row[1:])
    texts.append(text)
    labels.append((classes[int(row[0]) - 1],))
    ids.append(str(len(ids)))
  if not texts:
    raise DataError(f"{corpus}: {where} holds no row")
  return Part(texts, labels, ids)


def csv_files(corpus: str, paths: dict[str, str], fields: int,
              classes: tuple[str, ...]) -> Documents:
  """Loose `train.csv` and `test.csv` (AG News as torchtext serves it)."""
  parts = {}
  for split in ("train", "test"):
    path = paths[f"{split}.csv"]
    with reading(corpus, path), open(path, encoding="utf-8", newline="") as f:
      parts[split] = class_rows(corpus, path, f, fields, classes)
  return Documents(parts["train"], parts["test"], classes)


def csv_tar(corpus: str, path: str, fields: int, classes: tuple[str, ...]) -> Documents:
  """A tar.gz holding `FOLDER/train.csv` and `FOLDER/test.csv` (the
  DBpedia and Yahoo Answers releases)."""
  parts = {}
  with reading(corpus, path), tarfile.open(path, "r:gz") as archive:
    for member in archive:
      split = member.name.rsplit("/", 1)[-1].removesuffix(".csv")
      if member.isfile() and member.name.endswith(".csv") and split in ("train", "test"):
        stream = io.TextIOWrapper(archive.extractfile(member), encoding="utf-8", newline="")
        parts[split] = class_rows(corpus, f"{path}:{member.name}", stream, fields, classes)
  missing = [s for s in ("train", "test") if s not in parts]
  if missing:
    raise DataError(f"{corpus}: {path} holds no {missing[0]}.csv")
  return Documents(parts["train"], parts["test"], classes)


def newsgroups_tar(corpus: str, path: str) -> Documents:
  """The "bydate" posts, headers removed, sorted by (split, group, number)
  so the order does not depend on the archive's."""
  with reading(corpus, path):
    posts = sorted(_posts_from_tar(path), key=lambda p: (p[0], p[1], int(p[2])))
  parts = {split: Part([], [], []) for split in ("train", "test")}
  for split, group, number, raw in posts:
    parts[split].texts.append(body(raw))
    parts[split].labels.append((group,))
    parts[split].ids.append(f"{group}/{number}")
  for split, part in parts.items():
    if not part.texts:
      raise DataError(f"{corpus}: {path} holds no 20news-bydate-{split} post")
  classes = tuple(sorted({names[0] for names in parts["train"].labels}))
  return Documents(parts["train"], parts["test"], classes)


def rcv1_topics(corpus: str, path: str) -> dict[int, tuple[str, ...]]:
  """{document id: its topics, sorted} from the qrels file (`TOPIC DOCID 1`)."""
  topics: dict[int, set] = {}
  with reading(corpus, path), gzip.open(path, "rt", encoding="ascii") as f:
    for line_number, line in enumerate(f, start=1):
      tokens = line.split()
      if not tokens:
        continue
      if len(tokens) != 3 or not tokens[1].isdigit():
        raise DataError(f"{corpus}: {path}:{line_number}: expected `TOPIC DOCID 1`, got "
                        f"{line.strip()!r}")
      topics.setdefault(int(tokens[1]), set()).add(tokens[0])
  return {doc: tuple(sorted(names)) for doc, names in topics.items()}


def rcv1_vectors(corpus: str, train: list[str], test: list[str], qrels: str) -> Vectors:
  """The LYRL2004 vectors files (`docid index:value ...`, cosine-normalised
  ltc tf-idf) of each split, in file order, with their topics."""
  paths = train + test
  with reading(corpus, ", ".join(paths)):
    try:
      parsed = load_svmlight_files(paths, dtype=np.float64, zero_based=False)
    except ValueError as e:  # the parser's message for a malformed line
      raise DataError(f"{corpus}: cannot parse {', '.join(paths)}: {e}") from e
  topics = rcv1_topics(corpus, qrels)
  matrices = [scipy.sparse.csr_matrix(m) for m in parsed[::2]]
  ids = [np.asarray(d, np.int64) for d in parsed[1::2]]
  unlabelled = [int(d) for d in np.concatenate(ids) if int(d) not in topics]
  if unlabelled:
    raise DataError(f"{corpus}: {len(unlabelled)} documents have no topic in {qrels} "
                    f"(first: {unlabelled[0]})")
  n = len(train)
  stack = lambda ms: scipy.sparse.vstack(ms, format="csr")
  as_text = lambda arrays: [str(d) for d in np.concatenate(arrays)]
  train_x, test_x = stack(matrices[:n]), stack(matrices[n:])
  train_ids, test_ids = as_text(ids[:n]), as_text(ids[n:])
  labels = lambda doc_ids: [topics[int(d)] for d in doc_ids]
  classes = tuple(sorted({t for names in topics.values() for t in names}))
  return Vectors(train_x, test_x, labels(train_ids), labels(test_ids), train_ids, test_ids,
                 classes)
