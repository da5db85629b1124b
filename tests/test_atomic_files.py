"""hashvae.files.atomic: a file or folder is whole or absent, with the mode
open() and mkdir() would give it."""

import os
import stat

import pytest

from hashvae.files import atomic


def mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
  path = tmp_path / "sub" / "out.txt"
  with atomic.atomic_path(str(path)) as tmp:
    open(tmp, "w").write("one")
  assert path.read_text() == "one" and mode(path) == atomic.usual_mode(0o666)
  with pytest.raises(RuntimeError), atomic.atomic_path(str(path)) as tmp:
    open(tmp, "w").write("torn")
    raise RuntimeError("killed")
  assert path.read_text() == "one"
  assert sorted(os.listdir(path.parent)) == ["out.txt"]  # no temporary left


def test_staged_folder_replaces_a_folder_whole_or_not_at_all(tmp_path):
  out = tmp_path / "arrays"
  with atomic.staged_folder(str(out)) as tmp:
    open(os.path.join(tmp, "a"), "w").write("1")
  assert os.listdir(out) == ["a"] and mode(out) == atomic.usual_mode(0o777)
  with pytest.raises(RuntimeError), atomic.staged_folder(str(out)) as tmp:
    open(os.path.join(tmp, "b"), "w").write("2")
    raise RuntimeError("killed")
  assert os.listdir(out) == ["a"] and os.listdir(tmp_path) == ["arrays"]
  with atomic.staged_folder(str(out)) as tmp:
    open(os.path.join(tmp, "c"), "w").write("3")
  assert os.listdir(out) == ["c"]  # the old folder's files are gone
