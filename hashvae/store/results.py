"""Writing a sweep's outputs: atomically, so a crash never leaves a torn file."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict

import numpy as np

from hashvae.files.atomic import atomic_path, staged_folder


def write_text(path: str, text: str):
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(text)


def write_json(path: str, value):
  write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def write_csv(path: str, rows: list[dict]):
  if not rows:
    raise ValueError(f"no rows to write to {path}")
  fields = list(dict.fromkeys(k for row in rows for k in row))  # union, in order
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=fields, restval="", lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  write_text(path, buffer.getvalue())


def parse_cell(text: str):
  """A results.csv cell as written: int, float or text."""
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def read_csv(path: str) -> list[dict]:
  """Rows of a results.csv, numbers parsed back to floats / ints."""
  with open(path, newline="", encoding="utf-8") as f:
    return [{k: parse_cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


CODE_BITS = "code_bits"  # the code length of the bit-packed codes in an archive


def packed_codes(**codes) -> dict:
  """{name: [..., bits] uint8 in {0, 1}} -> the same names packed 8 bits a
  byte along the last axis (np.packbits: [..., ceil(bits / 8)] uint8), and
  CODE_BITS. A million items of 32-bit codes take 4 MB, not 32."""
  bits = {c.shape[-1] for c in codes.values()}
  if len(bits) != 1:
    raise ValueError(f"codes of different lengths {sorted(bits)} in one archive")
  return {CODE_BITS: np.int64(bits.pop()),
          **{name: np.packbits(np.asarray(c, np.uint8), axis=-1) for name, c in codes.items()}}


def unpacked_codes(archive, name: str, index=()) -> np.ndarray:
  """[..., bits] uint8 in {0, 1}: codes `name` (rows `index` of them) of an
  archive written with packed_codes."""
  return np.unpackbits(archive[name][index], axis=-1, count=int(archive[CODE_BITS]))


def load_codes(path: str) -> dict:
  """A sweep's codes.npz as {"query_codes", "db_codes"}: [runs, items, bits]
  uint8 in {0, 1}, and {"query_labels", "db_labels"}."""
  with np.load(path, allow_pickle=False) as f:
    return dict(query_codes=unpacked_codes(f, "query_codes"),
                db_codes=unpacked_codes(f, "db_codes"),
                query_labels=f["query_labels"], db_labels=f["db_labels"])


def write_npz(path: str, **arrays):
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez_compressed(f, **arrays)


def write_array_folder(path: str, arrays: dict):
  """{name: array} -> a folder of .npy files (one per name, '/' -> '.'),
  complete or absent (staged_folder). Read back with `read_array_folder`,
  memory-mapped."""
  with staged_folder(path) as tmp:
    for name, value in arrays.items():
      np.save(os.path.join(tmp, name.replace("/", ".") + ".npy"), np.asarray(value))


def read_array_folder(path: str) -> dict:
  """The folder written by `write_array_folder`; arrays memory-mapped."""
  return {name[:-4].replace(".", "/"): np.load(os.path.join(path, name), mmap_mode="r")
          for name in sorted(os.listdir(path)) if name.endswith(".npy")}


def summarise(rows: list[dict], metric: str = "p@100") -> list[dict]:
  """Mean and std over seeds of `metric` per (method, level), in row order.

  Diverged runs (status != "ok") are left out of the mean and counted.
  """
  groups = defaultdict(lambda: ([], [0]))
  for row in rows:
    values, diverged = groups[(row["method"], row["level"])]
    if row.get("status", "ok") == "ok":
      values.append(float(row[metric]))
    else:
      diverged[0] += 1
  return [dict(method=method, level=level, runs=len(v), diverged=d[0],
               mean=float(np.mean(v)) if v else float("nan"),
               std=float(np.std(v)) if v else float("nan"))
          for (method, level), (v, d) in groups.items()]


def summary_text(rows: list[dict], metric: str = "p@100") -> str:
  """A plain table: one line per (method, level), mean +- std over seeds."""
  lines = [f"{'method':<16}{'level':>7}{'runs':>6}  {metric} (mean +- std)"]
  for s in summarise(rows, metric):
    note = f"  ({s['diverged']} diverged, not counted)" if s["diverged"] else ""
    lines.append(f"{s['method']:<16}{s['level']:>7.2f}{s['runs']:>6}  "
                 f"{s['mean']:.4f} +- {s['std']:.4f}{note}")
  return "\n".join(lines)
