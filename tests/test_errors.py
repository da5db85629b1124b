"""The entry points' error boundary (launch/errors.py): one line for an
expected error, a traceback for a bug or when asked for one."""

import importlib.util
import logging
import os
import re
import subprocess
import sys

import pytest

from launch import errors

from conftest import ROOT


def run(args, **env):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, **env))


def test_one_line_keeps_the_cause_of_an_embedded_traceback():
  text = ("flag --config=c.py:bitz=8: Error whilst parsing config file:\n\nTraceback "
          "(most recent call last):\n  File \"c.py\", line 3\nValueError: bad 'bitz=8'\n")
  assert errors.one_line(text) == "--config=c.py:bitz=8: ValueError: bad 'bitz=8'"
  assert errors.one_line("a\n  b\n") == "a b"


def test_traceback_only_when_asked_for(tmp_path):
  args = ["-m", "launch.report", f"--results={tmp_path}/none.csv", f"--out={tmp_path}"]
  plain = run(args)
  assert plain.returncode == 2 and "Traceback" not in plain.stderr
  assert plain.stderr.strip().splitlines()[-1].startswith("error: --results: no such file")
  for shown in (run(args + ["--verbose"]), run(args, HASHVAE_TRACEBACK="1")):
    assert shown.returncode == 2 and "Traceback (most recent call last)" in shown.stderr
    assert shown.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


def test_a_bug_keeps_its_traceback():
  bug = run(["-c", "from launch import errors\n"
                   "def main(argv):\n  return {}['missing']\n"
                   "errors.run(main, ['prog'])\n"])
  assert bug.returncode == 1 and "Traceback (most recent call last)" in bug.stderr
  assert "KeyError: 'missing'" in bug.stderr


class Records(logging.Handler):
  """Keeps (logger, level) of each record it sees."""

  def __init__(self):
    super().__init__(logging.DEBUG)
    self.seen = []

  def emit(self, record):
    self.seen.append((record.name, record.levelname))


def test_probe_loggers_pass_only_errors_while_quiet():
  handler, loggers = Records(), [logging.getLogger(n) for n in errors.PROBE_LOGGERS]
  saved = [(lg.level, list(lg.filters)) for lg in loggers]
  try:
    for lg in loggers:
      lg.addHandler(handler)
      lg.setLevel(logging.DEBUG)

    def log_each_level():
      handler.seen.clear()
      for lg in loggers:
        for level in (logging.INFO, logging.WARNING, logging.ERROR):
          lg.log(level, "Unable to initialize backend 'x'")
      return handler.seen

    errors.quiet_backend_probe()
    errors.quiet_backend_probe()  # twice: still one filter to take away
    assert log_each_level() == [(n, "ERROR") for n in errors.PROBE_LOGGERS]
    errors.quiet_backend_probe(False)
    assert len(log_each_level()) == 3 * len(loggers)
  finally:
    for lg, (level, filters) in zip(loggers, saved, strict=True):
      lg.removeHandler(handler)
      lg.setLevel(level)
      lg.filters[:] = filters


def test_backend_probe_lines_only_with_verbose(tmp_path):
  """jax logs a platform it cannot start ('tpu' without libtpu) at INFO, which
  absl prints; a data error is one line without --verbose."""
  if importlib.util.find_spec("libtpu") is not None:
    pytest.skip("libtpu is installed: jax's TPU probe may succeed and log nothing")
  args = ["-m", "launch.main", "--config=configs/snippets.py", f"--workdir={tmp_path}/w",
          f"--config.data.path={tmp_path}/none"]
  env = dict(JAX_PLATFORMS="", HASHVAE_TRACEBACK="0")  # jax probes every platform
  plain = run(args, **env)
  assert plain.returncode == 1, plain.stderr
  assert plain.stderr.strip().splitlines() == [
      f"error: DataError: snippets: data folder not found: '{tmp_path}/none' (set "
      "--config.data.path to the folder with train.txt and test.txt)"]
  loud = run(args + ["--verbose"], **env)
  assert loud.returncode == 1
  assert re.search(r"xla_bridge.py:\d+\] Unable to initialize backend 'tpu'", loud.stderr)
  assert loud.stderr.strip().splitlines()[-1] == plain.stderr.strip()
  assert not os.path.exists(tmp_path / "w")
