"""Building the field's text-hashing corpora from their published releases.

    manifest = corpora.build(corpora.CORPORA["agnews"], "vdsh_tfidf", out="data/agnews",
                             source="downloads/ag_news_csv")

Every source file is verified against its recorded checksum before it is
read; the recipe's files and a manifest.json are written into a folder
beside `out` and renamed to `out` at the end, so a failed build leaves no
`out`. Two builds of the same sources, recipe and seed give the same bytes.
"""

from __future__ import annotations

from typing import Optional

from hashvae.data.corpora import output
from hashvae.data.corpora.catalog import CORPORA, Corpus
from hashvae.data.corpora.recipes import RECIPES, SPLITS, hold_out
from hashvae.data.corpora.sources import download, locate, verify
from hashvae.data.dataset import DataError

VALIDATION_FRACTION = 0.1  # of the published training split, held out as validation


def check_published(corpus: Corpus, data) -> None:
  """Refuses a copy whose splits do not hold the published item counts."""
  if corpus.published is None:
    return
  got = tuple(len(x) if not hasattr(x, "shape") else x.shape[0]
              for x in (data.train, data.test))
  if got != corpus.published:
    raise DataError(f"{corpus.name}: the copy holds {got[0]} training and {got[1]} test "
                    f"items, the release {corpus.published[0]} and {corpus.published[1]}: "
                    "a truncated or different copy")


def build(corpus: Corpus, recipe: str, out: str, source: Optional[str] = None,
          seed: int = 0, validation_fraction: float = VALIDATION_FRACTION,
          command: str = "") -> dict:
  """Builds `corpus` with `recipe` into the folder `out` (which must not
  exist or be empty); returns the manifest written there. `source`: a
  folder holding the release's files (or the one file); None downloads
  them into `out`.download. `command`: recorded in the manifest."""
  if recipe not in RECIPES:
    raise DataError(f"unknown recipe {recipe!r}; known: {sorted(RECIPES)}")
  output.check_out(out)
  if source is None:
    source = download(corpus.name, corpus.files, out.rstrip("/") + ".download")
  paths = locate(corpus.name, corpus.files, source)
  sources = verify(corpus.name, corpus.files, paths)  # before anything is read
  data = corpus.read(corpus.name, paths)
  check_published(corpus, data)
  published_train = data.train.shape[0] if hasattr(data.train, "shape") else len(data.train)
  fit, val = hold_out(published_train, validation_fraction, seed)
  built = RECIPES[recipe](corpus.name, data, fit, val)
  manifest = {
      "corpus": corpus.name, "title": corpus.title, "recipe": recipe,
      "sources": sources, "seed": seed, "validation_fraction": validation_fraction,
      "counts": {split: built.counts[split] for split in SPLITS},
      "vocabulary_size": built.vocabulary_size, "classes": list(data.classes),
      "multilabel": corpus.multilabel, "layout": built.layout,
      "files": {name: output.sha256(data) for name, data in sorted(built.files.items())},
      "command": command,
  }
  with output.staging(out) as folder:
    output.write_files(folder, {**built.files, output.MANIFEST: output.json_bytes(manifest)})
  return manifest


__all__ = ["CORPORA", "Corpus", "RECIPES", "VALIDATION_FRACTION", "build"]
