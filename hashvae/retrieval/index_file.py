"""The search index's container: one file, a JSON header and raw arrays that
are memory-mapped, not read, when the file is opened.

Layout (all integers little-endian):

    bytes 0..7     MAGIC, b"HVINDEX\\0"
    bytes 8..15    uint64: the header's length in bytes, H
    bytes 16..     the header, UTF-8 JSON: {"format", "version", "meta": {...},
                   "arrays": {name: {"dtype", "shape", "offset"}}}
    then           each array's raw C-order bytes at its recorded offset (a
                   multiple of ALIGN from the file's start), zero padding between

Opening reads the first 16 + H bytes and maps each array with np.memmap: a
page is read from disk when an answer touches it, so opening costs
milliseconds and memory grows with what is read (a result's text, the
encoder's rows of a query's terms), not with the file. A zip (.npz) cannot
offer this: np.load maps no member of an archive.

Text is kept as one UTF-8 byte buffer plus [items + 1] int64 offsets
(`StringTable`), not as fixed-width unicode, whose every row is as wide as
the longest text.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

MAGIC = b"HVINDEX\0"
ALIGN = 64  # bytes; every array starts on a multiple (cache lines, any dtype)
ZIP_MAGIC = b"PK\x03\x04"  # an .npz: the index format of version 2 and before


class ContainerError(ValueError):
  """The file is not a complete index container (the index names the file)."""


class NpzFileError(ContainerError):
  """The file is a zip archive: an index of the .npz format of version 2 and before."""


def string_arrays(texts) -> tuple[np.ndarray, np.ndarray]:
  """Strings -> (UTF-8 bytes [total] uint8, offsets [len + 1] int64): string i
  is bytes[offsets[i]:offsets[i + 1]]."""
  encoded = [t.encode("utf-8") for t in texts]
  offsets = np.zeros(len(encoded) + 1, np.int64)
  np.cumsum([len(e) for e in encoded], out=offsets[1:])
  return np.frombuffer(b"".join(encoded), np.uint8), offsets


class StringTable:
  """Read-only strings from `string_arrays`' two arrays (memory-mapped or
  not): each string is decoded when it is asked for."""

  def __init__(self, data: np.ndarray, offsets: np.ndarray):
    self.data, self.offsets = data, offsets

  def __len__(self) -> int:
    return len(self.offsets) - 1

  def __getitem__(self, i) -> str:
    i = int(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"string {i} of {len(self)}")
    i %= len(self)
    return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8")

  def prefix(self, i, size: int) -> tuple[str, bool]:
    """(the start of string i: at most `size` bytes, a character cut at the
    end dropped; whether that is the whole string)."""
    start, end = int(self.offsets[i]), int(self.offsets[i + 1])
    whole = end <= start + size
    raw = self.data[start:min(end, start + size)].tobytes()
    return raw.decode("utf-8", errors="strict" if whole else "ignore"), whole

  def tolist(self) -> list[str]:
    raw, offsets = self.data.tobytes(), self.offsets.tolist()
    return [raw[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _aligned(position: int) -> int:
  return -(-position // ALIGN) * ALIGN


def write(path: str, header: dict, arrays: dict[str, np.ndarray]):
  """Writes the container to `path` (a new file; the caller renames it into
  place). `header` gets an "arrays" entry describing `arrays`."""
  arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
  # The header's length depends on the offsets it records, and they on its
  # length: lay the arrays out after a header padded to a round size.
  table = {name: dict(dtype=a.dtype.str, shape=list(a.shape), offset=0)
           for name, a in arrays.items()}
  size = len(json.dumps(dict(header, arrays=table)).encode()) + 32 * len(arrays) + 64
  position = _aligned(16 + size)
  for name, a in arrays.items():
    table[name]["offset"] = position
    position = _aligned(position + a.nbytes)
  text = json.dumps(dict(header, arrays=table)).encode("utf-8")
  if len(text) > size:
    raise AssertionError("index header outgrew its reserved size")  # a bug, not input
  with open(path, "wb") as f:
    f.write(MAGIC + struct.pack("<Q", size) + text.ljust(size, b" "))
    for name, a in arrays.items():
      f.write(b"\0" * (table[name]["offset"] - f.tell()))
      f.write(a.tobytes())


def read_header(path: str) -> dict:
  """The header of the container at `path` (16 + H bytes read);
  ContainerError when the file is not one, or is cut short."""
  size_on_disk = os.path.getsize(path)
  with open(path, "rb") as f:
    start = f.read(16)
    if start[:4] == ZIP_MAGIC:
      raise NpzFileError("an .npz archive")
    if len(start) < 16:
      raise ContainerError(f"corrupt or truncated index file ({len(start)} bytes)")
    if start[:8] != MAGIC:
      raise ContainerError("not a hashvae index file (it does not start with the index "
                           "header)")
    (size,) = struct.unpack("<Q", start[8:])
    if 16 + size > size_on_disk:
      raise ContainerError("corrupt or truncated index file (the header is cut short)")
    try:
      header = json.loads(f.read(size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise ContainerError(f"corrupt index file (unreadable header: {e})") from e
  if not isinstance(header, dict) or not isinstance(header.get("arrays"), dict):
    raise ContainerError("corrupt index file (the header lists no arrays)")
  return header


def map_arrays(path: str, header: dict) -> dict[str, np.ndarray]:
  """{name: read-only np.memmap} of the arrays the header lists (an empty
  array is a plain one: nothing to map)."""
  size_on_disk = os.path.getsize(path)
  arrays = {}
  for name, entry in header["arrays"].items():
    try:
      dtype, shape, offset = np.dtype(entry["dtype"]), tuple(entry["shape"]), entry["offset"]
    except (KeyError, TypeError) as e:
      raise ContainerError(f"corrupt index file (array {name!r}: {e})") from e
    if dtype.hasobject or offset % ALIGN or offset < 16:
      raise ContainerError(f"corrupt index file (array {name!r} is not a raw array)")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset + nbytes > size_on_disk:
      raise ContainerError(f"corrupt or truncated index file (array {name!r} ends at "
                           f"byte {offset + nbytes}, the file at {size_on_disk})")
    arrays[name] = (np.zeros(shape, dtype) if nbytes == 0 else
                    np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape))
  return arrays
