r"""Builds a text-hashing corpus from its published release.

    python -m launch.data --corpus=20news --recipe=vdsh_tfidf --out=data/20news \
        --source=../shared/data/20news-bydate.tar.gz
    python -m launch.data --corpus=agnews --recipe=raw --out=data/agnews_raw \
        --source=downloads/ag_news_csv

--source is a folder holding the release's files by their published names
(or the one file of a one-file release); without it they are downloaded
from their recorded addresses into OUT.download. Each file is verified
against its recorded checksum first. OUT must not exist or be empty; it
appears only when the build is complete, holding the recipe's files and
manifest.json (sources and checksums, seed, counts per split, vocabulary
size, this command). Corpora, recipes and checksums: docs/datasets.md.
"""

import re
import shlex
import sys

from absl import app, flags

from hashvae.data import corpora
from launch import errors

_CORPUS = flags.DEFINE_enum("corpus", None, sorted(corpora.CORPORA), "The corpus to build.")
_OUT = flags.DEFINE_string("out", None, "The folder to build it in (absent or empty).")
_SOURCE = flags.DEFINE_string("source", None, "A local copy of the release: the folder "
                              "holding its files, or its one file. Default: download.")
_RECIPE = flags.DEFINE_enum("recipe", "vdsh_tfidf", sorted(corpora.RECIPES),
                            "The preprocessing (docs/datasets.md).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the draw of validation from the training "
                             "split.", lower_bound=0)
flags.mark_flags_as_required(["corpus", "out"])


def command(argv) -> str:
  """This command as recorded in the manifest: without --out, which is the
  folder the manifest lies in (so two builds of the same data match)."""
  kept, skip = [], False
  for arg in argv[1:]:
    if not skip and not re.match(r"^--?out(=|$)", arg):
      kept.append(arg)
    skip = arg in ("--out", "-out")  # its value is the next argument
  return shlex.join(["python", "-m", "launch.data", *kept])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  errors.check_out(_OUT.value)
  manifest = corpora.build(corpora.CORPORA[_CORPUS.value], _RECIPE.value, _OUT.value,
                           source=_SOURCE.value, seed=_SEED.value, command=command(sys.argv))
  counts = ", ".join(f"{split} {c['items']}" for split, c in manifest["counts"].items())
  print(f"wrote {_OUT.value}: {manifest['corpus']} by {manifest['recipe']} ({counts}; "
        f"vocabulary {manifest['vocabulary_size']}); files {sorted(manifest['files'])}")


def cli(argv=None):
  """Console entry point; `argv` defaults to sys.argv."""
  errors.run(main, argv)


if __name__ == "__main__":
  cli()
