"""One sweep at a time per workdir: a lock file naming its holder.

`hold(workdir)` creates WORKDIR/.lock, locks it with flock and writes the
holder into it (pid, host, start time, command). A second process asking for
the same workdir is refused at once with that holder named. The lock dies
with its process: a lock file left by a killed sweep is not locked by
anyone, so the next run takes it over, saying whose it was. Only one process
of a multi-process run (process 0) takes it; the others are part of the same
holder, not rivals.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys

from hashvae.store.workdir import WorkdirError, check_folder

try:
  import fcntl
except ImportError:  # not POSIX: fall back on the pid written in the file
  fcntl = None

log = logging.getLogger("hashvae")

LOCK_NAME = ".lock"


class WorkdirLocked(WorkdirError):
  """Another live process holds the workdir."""


def lock_path(workdir: str) -> str:
  return os.path.join(workdir, LOCK_NAME)


def _read_holder(fd: int) -> dict:
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 65536).decode("utf-8", errors="replace")
  if not text.strip():
    return {}
  try:
    holder = json.loads(text)
  except json.JSONDecodeError:
    return dict(unreadable=text[:80])
  return holder if isinstance(holder, dict) else dict(unreadable=text[:80])


def describe(holder: dict) -> str:
  """'pid 123 on host h since 2024-05-01 12:00:03 (python -m launch.main ...)'."""
  if not holder or "pid" not in holder:
    return "an unknown process"
  text = f"pid {holder['pid']} on host {holder.get('host', '?')}"
  if holder.get("started"):
    text += f" since {holder['started']}"
  if holder.get("command"):
    text += f" ({holder['command'][:120]})"
  return text


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


def _locked_elsewhere(fd: int, holder: dict) -> bool:
  """Whether a live process holds the lock on `fd`'s file. Without flock
  (or where the file system refuses it) the pid written in the file is
  checked on this host; a holder on another host is assumed alive."""
  if fcntl is not None:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      return False
    except BlockingIOError:
      return True
    except OSError:  # e.g. ENOLCK on a file system without locks
      pass
  if "pid" not in holder:
    return False
  if holder.get("host") != socket.gethostname():
    return True
  return holder["pid"] != os.getpid() and _pid_alive(int(holder["pid"]))


def _refusal(workdir: str, holder: dict) -> WorkdirLocked:
  return WorkdirLocked(
      f"{workdir} is in use by {describe(holder)}: wait for that run to finish, "
      f"stop it, or use another --workdir (if no such process runs, delete "
      f"{lock_path(workdir)})")


def check_free(workdir: str):
  """Raises WorkdirLocked if a live process holds `workdir`; writes nothing.
  Entry points call it first, so that a second process stops before it
  loads any data."""
  path = lock_path(workdir)
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return  # no lock file (or no workdir): nothing holds it
  try:
    holder = _read_holder(fd)
    if fcntl is not None:
      try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return
      except BlockingIOError:
        raise _refusal(workdir, holder) from None
      except OSError:
        pass
    if _locked_elsewhere(fd, holder):
      raise _refusal(workdir, holder)
  finally:
    os.close(fd)


def _open_locked(workdir: str) -> tuple[int, dict]:
  """Opens and locks the lock file; returns (fd, the previous holder)."""
  path = lock_path(workdir)
  while True:
    try:
      fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f"{workdir}: cannot create its lock file ({e.strerror}); "
                         "is the folder writable?") from e
    holder = _read_holder(fd)
    if _locked_elsewhere(fd, holder):
      os.close(fd)
      raise _refusal(workdir, holder)
    # A holder that was releasing may have removed the file between our
    # open and our lock: then we locked a file nobody else will see.
    try:
      same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
      same = False
    if same:
      return fd, _read_holder(fd)  # read again, now that it cannot change
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str, processes: int = 1):
  """Holds `workdir` for this process while the block runs (creating the
  folder if needed). Raises WorkdirLocked naming the holder if another live
  process holds it; a lock left by a process that is gone is taken over with
  a warning. `processes`: how many processes of one run this lock stands for
  (written for the reader of the lock file)."""
  check_folder(workdir)
  fd, previous = _open_locked(workdir)
  try:
    if previous:
      log.warning("%s: taking over the lock of %s, which is no longer running "
                  "(its sweep resumes from its checkpoints)", workdir, describe(previous))
    holder = dict(pid=os.getpid(), host=socket.gethostname(),
                  started=datetime.datetime.now().isoformat(sep=" ", timespec="seconds"),
                  command=" ".join([os.path.basename(sys.executable), *sys.argv]),
                  processes=processes)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(holder) + "\n").encode())
    os.fsync(fd)
    yield holder
  finally:
    # Removed while still locked, then unlocked by closing: a process that
    # opened the old file in between notices it was removed (_open_locked).
    with contextlib.suppress(OSError):
      os.remove(lock_path(workdir))
    os.close(fd)
