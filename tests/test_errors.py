"""The entry points' error boundary (launch/errors.py): one line for an
expected error, a traceback for a bug or when asked for one."""

import os
import subprocess
import sys

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
