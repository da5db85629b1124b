"""A run's database codes as a faiss binary index, for users who serve with
faiss (an optional dependency: `pip install .[faiss]`).

faiss stores b-bit codes as b / 8 bytes and needs b to be a multiple of 8;
shorter codes are padded with zero bits, which add nothing to a distance.
Queries must be packed the same way (`packed`).
"""

from __future__ import annotations

import os

import numpy as np

INSTALL = "pip install .[faiss]  (or: pip install faiss-cpu)"


def packed(codes) -> np.ndarray:
  """[rows, bits] in {0, 1} -> [rows, ceil(bits / 8)] uint8, as faiss reads them."""
  return np.packbits(np.asarray(codes, np.uint8), axis=1)


def write(db_codes, path: str):
  """Writes an IndexBinaryFlat of `db_codes` ([items, bits] in {0, 1}) to
  `path`, atomically. ImportError naming the install when faiss is absent."""
  try:
    import faiss
  except ImportError as e:
    raise ImportError(f"writing a faiss index needs faiss: {INSTALL}") from e
  rows = packed(db_codes)
  table = faiss.IndexBinaryFlat(8 * rows.shape[1])
  table.add(rows)
  partial = path + ".partial"
  faiss.write_index_binary(table, partial)
  os.replace(partial, path)
