"""The published files each corpus is built from: where they are served and
the checksums a copy must match before anything is built.

A file may have several accepted checksums, each with where it comes from
(the release itself; a mirror that re-packed it). Most are sha256; where
only the MD5 that a widely used loader records is known (the release was
not obtainable here to compute its sha256), the record says md5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.request

from hashvae.data.dataset import DataError

CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Checksum:
  """One accepted digest of a file, and where it was recorded."""

  algorithm: str  # "sha256" or "md5"
  hexdigest: str
  origin: str  # whose copy or record this digest is of


@dataclasses.dataclass(frozen=True)
class SourceFile:
  """One file of a release, as its canonical address serves it."""

  name: str  # the file name under --source
  url: str  # where the release serves it
  checksums: tuple[Checksum, ...]  # any one of them accepts the copy


def digest(path: str, algorithm: str) -> str:
  """The hex digest of a file, read in 1 MiB chunks."""
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(CHUNK), b""):
      h.update(chunk)
  return h.hexdigest()


def locate(corpus: str, files: tuple[SourceFile, ...], source: str) -> dict[str, str]:
  """{file name: path}: `source` is a folder holding the files by name, or,
  for a corpus of one file, that file itself."""
  if os.path.isfile(source):
    if len(files) != 1:
      raise DataError(f"{corpus}: --source={source} is a file, but the corpus is made of "
                      f"{len(files)} files ({', '.join(f.name for f in files)}): give "
                      "the folder holding them")
    return {files[0].name: source}
  if not os.path.isdir(source):
    raise DataError(f"{corpus}: --source={source}: no such file or folder")
  paths = {f.name: os.path.join(source, f.name) for f in files}
  missing = [name for name, path in paths.items() if not os.path.isfile(path)]
  if missing:
    raise DataError(f"{corpus}: {source} lacks {', '.join(missing)} (the release's "
                    f"files: {', '.join(f.name for f in files)})")
  return paths


def verify(corpus: str, files: tuple[SourceFile, ...], paths: dict[str, str]) -> list[dict]:
  """Checks every file against its recorded checksums, before anything is
  read; returns what the manifest records of each (name, sha256, the
  digest that matched and its origin). A mismatch names the file."""
  records = []
  for source in files:
    path = paths[source.name]
    if not source.checksums:
      raise DataError(f"{corpus}: {source.name}: no published checksum is recorded, so a "
                      "copy cannot be verified (see docs/datasets.md)")
    sha256 = digest(path, "sha256")
    found = {"sha256": sha256}
    match = None
    for checksum in source.checksums:
      if checksum.algorithm not in found:
        found[checksum.algorithm] = digest(path, checksum.algorithm)
      if found[checksum.algorithm] == checksum.hexdigest:
        match = checksum
        break
    if match is None:
      wanted = ", ".join(f"{c.algorithm} {c.hexdigest[:16]}... ({c.origin})"
                         for c in source.checksums)
      raise DataError(f"{corpus}: {path}: sha256 {sha256[:16]}... ({os.path.getsize(path)} "
                      f"bytes) matches no recorded checksum ({wanted}): a different, "
                      "damaged or truncated copy")
    records.append({"file": source.name, "url": source.url, "sha256": sha256,
                    "verified": f"{match.algorithm} {match.hexdigest}",
                    "origin": match.origin})
  return records


def download(corpus: str, files: tuple[SourceFile, ...], folder: str) -> str:
  """Downloads the files missing from `folder` from their recorded
  addresses (each to a temporary name, renamed when complete); returns
  `folder`. They are verified afterwards, as a local copy is."""
  os.makedirs(folder, exist_ok=True)
  for source in files:
    path = os.path.join(folder, source.name)
    if os.path.isfile(path):
      continue
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source.url, timeout=60) as r:
        shutil.copyfileobj(r, out, CHUNK)
      os.replace(tmp, path)
    except OSError as e:  # urllib's URLError and HTTPError are OSErrors
      raise DataError(f"{corpus}: cannot download {source.url}: {e}; download it by hand "
                      f"into {folder} and give --source={folder}") from e
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  return folder
