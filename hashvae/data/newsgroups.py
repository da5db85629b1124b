"""20 Newsgroups from the raw "bydate" posts (a .tar.gz or an extracted folder).

Layout: .../20news-bydate-train/CLASS/ID and .../20news-bydate-test/CLASS/ID.
Headers are removed (they name the newsgroup, i.e. the label); the body is
vectorised to at most 10,000 tf-idf terms (input) with normalised term
counts as the target; posts left with no vocabulary term are dropped, as in
the VDSH files; 10% of the training posts are held out as validation.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import zlib
from typing import ClassVar

from hashvae.data.dataset import DataError, Dataset
from hashvae.data.text import check_vectorising, vectorise_corpus

SPLITS = {"20news-bydate-train": "train", "20news-bydate-test": "test"}


def body(raw: bytes) -> str:
  """The post without its header block (everything up to the first blank line)."""
  text = raw.decode("latin-1")
  head, sep, rest = text.partition("\n\n")
  return rest if sep else text


def _posts_from_tar(path):
  with tarfile.open(path, "r:*") as archive:
    for member in archive:
      parts = member.name.split("/")
      if (member.isfile() and len(parts) >= 3 and parts[-3] in SPLITS
          and parts[-1].isdigit()):  # posts are numbered; skip stray files
        yield SPLITS[parts[-3]], parts[-2], parts[-1], archive.extractfile(member).read()


def _posts_from_folder(path):
  for root, _, files in os.walk(path):
    parts = root.split(os.sep)
    if len(parts) >= 2 and parts[-2] in SPLITS:
      for name in filter(str.isdigit, files):  # posts are numbered
        with open(os.path.join(root, name), "rb") as f:
          yield SPLITS[parts[-2]], parts[-1], name, f.read()


@dataclasses.dataclass(frozen=True)
class NewsgroupsSpec:
  """config.data of configs/newsgroups.py (source=raw)."""

  name: ClassVar[str] = "newsgroups"
  path: str = "../shared/data/20news-bydate.tar.gz"  # or the extracted folder
  max_features: int = 10000  # tf-idf vocabulary size
  validation_fraction: float = 0.1  # of the training posts
  split_seed: int = 0  # the validation split

  def __post_init__(self):
    check_vectorising(self, "posts")


def load_newsgroups(spec: NewsgroupsSpec) -> Dataset:
  path = spec.path
  if not path or not os.path.exists(path):
    raise DataError(f"newsgroups: not found: {path!r} (set --config.data.path to "
                    "20news-bydate.tar.gz or its extracted folder)")
  try:
    posts = list(_posts_from_tar(path) if os.path.isfile(path)
                 else _posts_from_folder(path))
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    # A download cut short ends mid-stream: gzip raises EOFError there.
    raise DataError(f"newsgroups: cannot read {path} as a tar archive ({e}); a "
                    "truncated download? Download it again") from e
  # Sorted by (split, class, id) so the split does not depend on archive order.
  posts.sort(key=lambda p: (p[0], p[1], int(p[2])))
  docs = {"train": ([], []), "test": ([], [])}
  for split, label, _, raw in posts:
    docs[split][0].append(body(raw))
    docs[split][1].append(label)
  for split, (texts, _) in docs.items():
    if not texts:
      raise DataError(f"newsgroups: {path} holds no 20news-bydate-{split} posts")
  return vectorise_corpus("newsgroups", *docs["train"], *docs["test"],
                          max_features=spec.max_features,
                          validation_fraction=spec.validation_fraction,
                          split_seed=spec.split_seed,
                          where_test=f"{path} (test posts)", tfidf=True, drop_empty=True)
