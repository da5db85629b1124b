"""The error boundary every entry point runs in.

A mistake in the command line, a config, a data file or a workdir ends in
one line on stderr, `error: ...`, naming the flag, field or file and what to
do, and a non-zero exit status: 2 for the command line, 1 for anything else
the user can fix, 130 when interrupted (143 on SIGTERM). A Python traceback
is printed only for an error of none of those kinds, that is a bug, or with
--verbose or HASHVAE_TRACEBACK=1 for any error.

    def main(argv): ...

    def cli(argv=None):
      errors.run(main, argv)

A config override given twice (`--config.ks='(10,)' --config.ks='(500,)'`)
is refused: ml_collections would join the values of a tuple field into
(10, 500) and keep the last of any other field.

jax's backend probe (its INFO and WARNING lines "Unable to initialize
backend 'tpu'", "An NVIDIA GPU may be present ...", printed by absl's
handler when jax first looks for devices) is kept off stderr; --verbose
shows it. Its ERROR lines always show.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import tarfile
import traceback
import zipfile
import zlib
from typing import Callable, Optional

from absl import app, flags
from ml_collections.config_flags import config_flags as _config_flags

TRACEBACK_ENV = "HASHVAE_TRACEBACK"

_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, also print its Python "
                             f"traceback (as {TRACEBACK_ENV}=1 does); and show jax's "
                             "log of the platforms it probes (TPU, GPU plugins).")

# The loggers of jax's backend probe (jax 0.10: xla_bridge logs each platform
# that fails to start at INFO, a GPU or TPU it cannot use at WARNING).
PROBE_LOGGERS = ("jax._src.xla_bridge", "jax._src.hardware_utils")

# Errors of the project's own kinds, looked up among the modules an entry
# point has imported (an error's class is imported wherever it is raised),
# so that a light command such as launch.report does not import the training
# stack to recognise them.
PROJECT_ERRORS = (("hashvae.sweep.config_check", "ConfigError"),
                  ("hashvae.data.dataset", "DataError"),
                  ("hashvae.store.workdir", "WorkdirError"),
                  ("hashvae.store.checkpoint", "CheckpointError"),
                  ("hashvae.retrieval.index", "IndexFormatError"))

# Failures of files and formats a user hands in (missing, unreadable,
# truncated, not text, not JSON, not an archive).
FILE_ERRORS = (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError,
               zipfile.BadZipFile, tarfile.TarError, zlib.error)


class _QuietProbe(logging.Filter):
  """Drops a probe record below ERROR: a failed platform that jax falls
  back from is not the user's error, and would come before its one line."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


_QUIET_PROBE = _QuietProbe()


def quiet_backend_probe(quiet: bool = True):
  """Keeps jax's backend probe lines (PROBE_LOGGERS) below ERROR out of the
  log, or lets them through again; call before jax first looks for devices.
  A filter on the loggers themselves holds whatever absl's --verbosity sets
  the root logger to."""
  for name in PROBE_LOGGERS:
    logger = logging.getLogger(name)
    if quiet:
      logger.addFilter(_QUIET_PROBE)  # once: addFilter skips a filter it has
    else:
      logger.removeFilter(_QUIET_PROBE)


class Terminated(KeyboardInterrupt):
  """SIGTERM (a scheduler's preemption, `kill`), unwound like Ctrl-C so that
  locks are released and files closed."""


def project_errors() -> tuple:
  found = [getattr(sys.modules[module], name) for module, name in PROJECT_ERRORS
           if module in sys.modules and hasattr(sys.modules[module], name)]
  if "hashvae.sweep.experiment" in sys.modules:
    found += list(getattr(sys.modules["hashvae.sweep.experiment"], "USER_ERRORS", ()))
  return tuple(found)


def one_line(text) -> str:
  """A message on one line; of a message that embeds a traceback (config
  files that fail inside ml_collections), its first and last lines."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  if any(line.startswith("Traceback (most recent call last)") for line in lines):
    head = re.sub(r"^flag (--\S+?): Error whilst parsing config file:?$", r"\1",
                  lines[0]).rstrip(":")
    return f"{head}: {lines[-1]}" if head != lines[-1] else head
  return " ".join(lines)


def describe(error: BaseException) -> str:
  """The one line for an expected error (without the `error: ` prefix)."""
  if isinstance(error, project_errors()):
    return f"{type(error).__name__}: {one_line(error)}"
  name = getattr(error, "filename", None)
  if isinstance(error, OSError) and name is None:  # raised with a message of its own
    return one_line(error)
  if isinstance(error, FileNotFoundError):
    return f"no such file or folder: {name}"
  if isinstance(error, IsADirectoryError):
    return f"{name} is a folder, not a file"
  if isinstance(error, NotADirectoryError):
    return f"{name}: part of this path is a file, not a folder"
  if isinstance(error, PermissionError):
    return f"permission denied: {name} (check who may read and write it)"
  if isinstance(error, OSError) and name:
    return f"{error.strerror or type(error).__name__}: {name}"
  if isinstance(error, UnicodeDecodeError):
    return f"a file is not UTF-8 text ({error.reason} at byte {error.start})"
  if isinstance(error, json.JSONDecodeError):
    return f"a file is not valid JSON, perhaps truncated ({error.msg}, line {error.lineno})"
  if isinstance(error, (EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error)):
    return f"a damaged or truncated file ({type(error).__name__}: {one_line(error)})"
  return f"{type(error).__name__}: {one_line(error)}"


def existing_file(path: str, flag: str) -> str:
  """`path`, or a usage error naming --`flag` when it is not a file."""
  if not os.path.exists(path):
    raise app.UsageError(f"--{flag}: no such file {path!r}")
  if not os.path.isfile(path):
    raise app.UsageError(f"--{flag}: {path!r} is a folder, not a file")
  return path


def check_out(folder: str):
  """A usage error when --out names a file, not a folder."""
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise app.UsageError(f"--out={folder} is a file, not a folder")


def wants_traceback(argv) -> bool:
  """--verbose (read from argv too: it must work when parsing fails) or
  HASHVAE_TRACEBACK=1."""
  if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
    return True
  if _VERBOSE.present:
    return _VERBOSE.value
  return any(a in ("--verbose", "-verbose") for a in argv or ())


def fail(message: str, code: int, error: Optional[BaseException] = None,
         argv=None):
  """Prints `message` as the last line on stderr (after the traceback of
  `error`, when asked for) and exits with `code`."""
  if error is not None and wants_traceback(argv):
    traceback.print_exception(error, file=sys.stderr)
  sys.stdout.flush()
  print(message, file=sys.stderr, flush=True)
  sys.exit(code)


# --- the command line --------------------------------------------------------

def _config_flag_names() -> list[str]:
  """Names of the config-file flags (--config), whose fields are overridden
  as --config.<field>."""
  return [name for name in flags.FLAGS
          if "." not in name and _config_flags.is_config_flag(flags.FLAGS[name])]


def check_overrides_once(argv):
  """Refuses a config override given more than once (see the module doc)."""
  for config in _config_flag_names():
    seen = {}
    for arg in argv[1:]:
      match = re.match(rf"^--?(no)?{re.escape(config)}\.([^=]+)", arg)
      if match:
        seen.setdefault(match.group(2), []).append(arg)
    for field, given in seen.items():
      if len(given) > 1:
        raise app.UsageError(
            f"--{config}.{field} is given {len(given)} times ({', '.join(given)}): give "
            f"it once (a tuple as one quoted value, e.g. --{config}.ks='(10,500)')")


def check_config_files(argv):
  """A missing config file named, before ml_collections reports it in a
  five-line message."""
  for config in _config_flag_names():
    for arg in argv[1:]:
      match = re.match(rf"^--?{re.escape(config)}=(.*)$", arg)
      if match:
        path = match.group(1).split(":", 1)[0]
        if path and not os.path.isfile(path):
          raise app.UsageError(f"--{config}={match.group(1)}: no such config file "
                               f"{path!r}")


def check_tuple_overrides():
  """A tuple override whose items are not of the default's type: ml_collections
  reads `--config.ks=abc` as ('abc',) and an unclosed '(0.1' as a string."""
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if "." not in name or not flag.present or not isinstance(flag, flags.MultiFlag):
      continue
    default, value = tuple(flag.default or ()), tuple(flag.value or ())
    kinds = {type(v) for v in default}
    numeric = kinds and kinds <= {int, float}
    if numeric and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in value):
      given = " ".join(a for a in sys.argv[1:] if re.match(rf"^--?{re.escape(name)}(=|$)", a))
      raise app.UsageError(f"{given or '--' + name}: expected a tuple of numbers, as "
                           f"one quoted value like --{name}='{default!r}'")


def _unknown_field(error: Exception, argv) -> Optional[str]:
  """ml_collections' message for a misspelt override (an AttributeError
  holding the field and a suggestion), as one line naming the flag."""
  text = str(error).replace("\\n", "\n").replace("\\'", "'")
  match = re.search(r"'(\w+)'", text)
  if not match:
    return None
  field = match.group(1)
  flag = next((a.split("=", 1)[0] for a in argv[1:]
               if re.match(rf"^--?\w+\.(\w+\.)*{field}(=|$)", a)), f"--…{field}")
  hint = re.search(r'Did you mean "([^"]+)"', text)
  return (f"{flag}: no config field {field!r}"
          + (f" (did you mean {hint.group(1)!r}?)" if hint else ""))


def import_extra_modules(argv):
  """Imports the modules of `--config.extra_modules` before the config file is
  read: a user's method must be registered for its config fields (weights,
  options) to exist and take overrides."""
  if any(a.startswith("--config.extra_modules") for a in argv):
    from hashvae.sweep.config_check import import_modules_named_in
    import_modules_named_in(argv)


def parse_flags(argv):
  """absl's flag parsing, every failure one line and exit status 2."""
  try:
    check_overrides_once(argv)
    check_config_files(argv)
    import_extra_modules(argv)
    try:
      rest = flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:  # ml_collections: no such field
      raise app.UsageError(_unknown_field(e, argv) or one_line(e)) from e
    check_tuple_overrides()
    return rest
  except app.UsageError as e:
    fail(f"error: {one_line(e)}", 2, e, argv)
  except flags.Error as e:
    fail(f"error: {one_line(e)} (see --helpshort)", 2, e, argv)
  except project_errors() + FILE_ERRORS + (ValueError, TypeError) as e:
    # raised by a config file's get_config, which runs while parsing
    fail(f"error: --config: {describe(e)}", 2, e, argv)


# --- running main ------------------------------------------------------------

def _on_sigterm(signum, frame):
  raise Terminated()


def guarded(main: Callable, argv, on_interrupt: str):
  """Runs main(argv); an expected error becomes one line and an exit status."""
  quiet_backend_probe(not _VERBOSE.value)  # flags parsed, no device looked for yet
  try:
    return main(argv)
  except app.UsageError as e:
    fail(f"error: {one_line(e)}", 2, e, argv)
  except Terminated as e:
    fail(f"terminated: {on_interrupt}", 143, e, argv)
  except KeyboardInterrupt as e:
    fail(f"interrupted: {on_interrupt}", 130, e, argv)
  except project_errors() + FILE_ERRORS as e:
    fail(f"error: {describe(e)}", 1, e, argv)


def run(main: Callable, argv=None, on_interrupt: str = "stopped before the end"):
  """app.run(main) inside the error boundary. `argv` defaults to sys.argv;
  `on_interrupt` completes the line printed on Ctrl-C or SIGTERM."""
  argv = list(sys.argv if argv is None else argv)
  # ml_collections' config flags read their overrides from sys.argv.
  sys.argv = argv
  quiet_backend_probe()  # a config file's get_config runs while flags are parsed
  if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    try:
      signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
      pass
  app.run(lambda args: guarded(main, args, on_interrupt), argv=argv,
          flags_parser=parse_flags)
