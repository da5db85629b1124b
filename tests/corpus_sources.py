"""Tiny synthetic copies of each release format that hashvae.data.corpora
reads, written into a test's tmp_path, and the corpus records that accept
them (their own sha256 and item counts in place of the release's)."""

import csv
import dataclasses
import gzip
import io
import tarfile

import numpy as np

from hashvae.data.corpora import CORPORA
from hashvae.data.corpora.sources import Checksum, digest

# Words of each class (3+ letters, not stop words) and words every class uses.
SHARED = ("report", "today", "people", "market", "season")


def class_words(k: int) -> list[str]:
  return [f"topic{k}{w}" for w in ("alpha", "bravo", "charlie", "delta", "echo")]


def document(rng, k: int, words: int) -> str:
  vocab = class_words(k) + list(SHARED)
  return " ".join(rng.choice(vocab, size=words))


def class_csv(rng, rows: int, classes: int, fields: int) -> bytes:
  """The CSV releases' layout: class 1..classes, then quoted text fields."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
  for i in range(rows):
    k = i % classes
    texts = [document(rng, k, int(rng.integers(3, 9))) for _ in range(fields - 1)]
    writer.writerow([str(k + 1), *texts])
  return buffer.getvalue().encode()


def tar_gz(path, members: dict[str, bytes]):
  with tarfile.open(path, "w:gz") as archive:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      archive.addfile(info, io.BytesIO(data))


def accepting(name: str, paths: dict, published) -> "object":
  """CORPORA[name] with each file's checksum that of the copy in `paths`
  ({file name: path}) and the copy's item counts."""
  base = CORPORA[name]
  files = tuple(dataclasses.replace(f, checksums=(Checksum("sha256", digest(str(paths[f.name]),
                                                                           "sha256"),
                                                           "test copy"),))
                for f in base.files)
  return dataclasses.replace(base, files=files, published=published)


def agnews(folder, train=40, test=12, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "train.csv").write_bytes(class_csv(rng, train, 4, 3))
  (folder / "test.csv").write_bytes(class_csv(rng, test, 4, 3))
  paths = {n: folder / n for n in ("train.csv", "test.csv")}
  return accepting("agnews", paths, (train, test)), folder


def csv_release(name, archive, top, classes, fields, folder, train, test, seed=0):
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / archive
  tar_gz(path, {f"{top}/classes.txt": b"x\n",
                f"{top}/train.csv": class_csv(rng, train, classes, fields),
                f"{top}/test.csv": class_csv(rng, test, classes, fields)})
  return accepting(name, {archive: path}, (train, test)), path


def dbpedia(folder, train=56, test=28):
  return csv_release("dbpedia", "dbpedia_csv.tar.gz", "dbpedia_csv", 14, 3, folder, train,
                     test)


def yahoo(folder, train=40, test=20):
  return csv_release("yahoo", "yahoo_answers_csv.tar.gz", "yahoo_answers_csv", 10, 4, folder,
                     train, test)


def newsgroups(folder, per_group=(8, 3), groups=("alt.atheism", "sci.space", "rec.autos")):
  """A bydate-like tar.gz: 20ng/20news-bydate-{train,test}/GROUP/NUMBER, each
  post a header block, a blank line and its body."""
  rng = np.random.default_rng(1)
  members = {}
  number = 1000
  for split, count in zip(("train", "test"), per_group, strict=True):
    for k, group in enumerate(groups):
      for _ in range(count):
        number += 1
        post = f"From: someone\nSubject: {group}\n\n{document(rng, k, 8)}\n"
        members[f"20ng/20news-bydate-{split}/{group}/{number}"] = post.encode("latin-1")
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "20news-bydate.tar.gz"
  tar_gz(path, members)
  published = tuple(count * len(groups) for count in per_group)
  return accepting("20news", {path.name: path}, published), path


def rcv1(folder, train=12, test_parts=(4, 4, 3, 3), features=30):
  """LYRL2004-like vectors (`docid  index:value ...`, gzip) and qrels."""
  rng = np.random.default_rng(2)
  folder.mkdir(parents=True, exist_ok=True)
  topics = ("C15", "ECAT", "GCAT", "M14")
  doc, qrels = 2286, []
  def vectors(name, rows):
    nonlocal doc
    lines = []
    for _ in range(rows):
      doc += 1
      k = doc % len(topics)
      cols = np.sort(rng.choice(np.arange(1 + 5 * k, 6 + 5 * k).tolist()
                                + list(range(21, features + 1)), 6, replace=False))
      values = rng.uniform(0.05, 1.0, len(cols))
      lines.append(f"{doc}  " + " ".join(f"{c}:{v:.6f}" for c, v in zip(cols, values,
                                                                          strict=True)))
      qrels.extend([f"{topics[k]} {doc} 1", f"{topics[(k + 1) % 4]} {doc} 1"])
    (folder / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
  vectors("lyrl2004_vectors_train.dat.gz", train)
  for i, rows in enumerate(test_parts):
    vectors(f"lyrl2004_vectors_test_pt{i}.dat.gz", rows)
  (folder / "rcv1v2.topics.qrels.gz").write_bytes(
      gzip.compress(("\n".join(qrels) + "\n").encode(), mtime=0))
  paths = {f.name: folder / f.name for f in CORPORA["rcv1"].files}
  return accepting("rcv1", paths, (train, sum(test_parts))), folder
