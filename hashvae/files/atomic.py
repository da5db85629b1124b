"""`atomic_path` for one file, `staged_folder` for a folder of them."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


def usual_mode(mode: int) -> int:
  """`mode` less the process's umask: what open() or mkdir() would give;
  mkstemp and mkdtemp give 0600 and 0700 instead."""
  mask = os.umask(0)
  os.umask(mask)
  return mode & ~mask


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside `path`; renames it over `path` on success,
  removes it on any failure."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, usual_mode(0o666))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def staged_folder(path: str):
  """Yields a new empty folder beside `path`; on success it takes the place
  of `path` (a folder already there is removed first), on any failure it is
  removed."""
  path = os.path.abspath(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
  try:
    yield tmp
    os.chmod(tmp, usual_mode(0o777))
    if os.path.isdir(path):
      shutil.rmtree(path)
    os.replace(tmp, path)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)
