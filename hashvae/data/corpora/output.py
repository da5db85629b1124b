"""The bytes of a built corpus, and the folder they are written to.

Every file is made in memory as bytes that depend only on the data: the
.mat header's creation time is replaced by a fixed text, CSV rows are
written in a fixed order with "\\n" line ends. The folder is filled under a
temporary name beside --out and renamed at the end, so a failed build leaves
nothing half-written.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os

import scipy.io

from hashvae.data.dataset import DataError
from hashvae.files.atomic import staged_folder

# The first 116 bytes of a MAT 5 file are free descriptive text; scipy writes
# the platform and the time there, which would make two builds differ.
MAT_TEXT_BYTES = 116
MAT_TEXT = b"MATLAB 5.0 MAT-file, written by hashvae.data.corpora"
MANIFEST = "manifest.json"


def mat_bytes(arrays: dict) -> bytes:
  """{name: array or sparse matrix} as a compressed MAT 5 file that
  scipy.io.loadmat reads (sparse matrices stay sparse)."""
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, arrays, do_compression=True)
  data = bytearray(buffer.getvalue())
  data[:MAT_TEXT_BYTES] = MAT_TEXT.ljust(MAT_TEXT_BYTES)
  return bytes(data)


def table_bytes(ids, texts, labels, separator: str = "|") -> bytes:
  """A CSV of `id,text,label` (several labels joined by `separator`), the
  layout configs/table.py reads."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["id", "text", "label"])
  for item, text, names in zip(ids, texts, labels, strict=True):
    writer.writerow([item, text, separator.join(names)])
  return buffer.getvalue().encode("utf-8")


def json_bytes(value) -> bytes:
  return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def check_out(out: str):
  """Refuses an --out that exists and is not an empty folder (a build never
  overwrites one), before any work is done."""
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise DataError(f"--out={out} exists and is not an empty folder: remove it or give "
                    "another")


@contextlib.contextmanager
def staging(out: str):
  """Yields a new folder beside `out` (refused unless `out` is absent or an
  empty folder); on success it is renamed to `out`, on any failure removed."""
  check_out(out)
  with staged_folder(out) as tmp:
    yield tmp


def write_files(folder: str, files: dict[str, bytes]):
  for name, data in files.items():
    with open(os.path.join(folder, name), "wb") as f:
      f.write(data)
