"""python -m launch.data: bad inputs end in one `error:` line and leave no
--out folder; the real 20 Newsgroups release builds to the same bytes twice
(slow) and records its command."""

import json
import os
import re
import subprocess
import sys

import corpus_sources as sources
import pytest

from conftest import ROOT, shared_file

RUNNER = os.path.join(ROOT, "tests", "scripts", "run_entry_cases.py")


def run_cases(cases: list[list[str]]) -> list[dict]:
  """Each argv through launch.data's cli, all in one process."""
  done = subprocess.run([sys.executable, RUNNER, "launch.data"], cwd=ROOT, check=True,
                        input=json.dumps([["launch.data", *c] for c in cases]),
                        capture_output=True, text=True, timeout=120)
  return json.loads(done.stdout)


def last_line(outcome: dict) -> str:
  lines = [line for line in outcome["stderr"].splitlines() if line.strip()]
  assert "Traceback" not in outcome["stderr"]
  return lines[-1]


def test_bad_inputs_are_one_line_and_leave_no_folder(tmp_path):
  _, ag = sources.agnews(tmp_path / "ag")  # the release's layout, not its bytes
  empty = tmp_path / "empty"
  empty.mkdir()
  nyt = tmp_path / "nyt"
  nyt.mkdir()
  (nyt / "nyt_corpus_LDC2008T19.tgz").write_bytes(b"not the release")
  (tmp_path / "a_file").write_text("x")
  out = lambda case: f"--out={tmp_path / ('out_' + case)}"
  cases = {
      "mismatch": (["--corpus=agnews", f"--source={ag}", out("mismatch")], 1,
                   r"^error: DataError: agnews: \S+/train\.csv: sha256 \w+\.\.\. \(\d+ bytes\) "
                   r"matches no recorded checksum \(md5 b1a00f826fdfbd24\.\.\."),
      "missing": (["--corpus=agnews", f"--source={empty}", out("missing")], 1,
                  r"^error: DataError: agnews: \S+ lacks train\.csv, test\.csv"),
      "nyt": (["--corpus=nyt", f"--source={nyt}", out("nyt")], 1,
              r"no published checksum is recorded"),
      "corpus": (["--corpus=imdb", out("corpus")], 2, r"^error: .*--corpus"),
      "recipe": (["--corpus=agnews", "--recipe=bpe", out("recipe")], 2, r"^error: .*--recipe"),
      "no_out": (["--corpus=agnews"], 2, r"^error: .*--out"),
      "out_file": (["--corpus=agnews", f"--source={ag}", f"--out={tmp_path / 'a_file'}"], 2,
                   r"^error: --out=\S+ is a file, not a folder"),
  }
  outcomes = run_cases([argv for argv, _, _ in cases.values()])
  for (case, (_, code, pattern)), outcome in zip(cases.items(), outcomes, strict=True):
    assert outcome["code"] == code, (case, outcome)
    assert re.search(pattern, last_line(outcome)), (case, outcome)
    assert not (tmp_path / f"out_{case}").exists(), case
  assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no staging folder


@pytest.mark.slow
def test_real_20news_builds_twice_to_the_same_bytes(tmp_path):
  release = shared_file("20news-bydate.tar.gz")
  argv = ["--corpus=20news", "--recipe=vdsh_tfidf", f"--source={release}"]
  outcomes = run_cases([[*argv, f"--out={tmp_path / 'a'}"], [*argv, f"--out={tmp_path / 'b'}"]])
  assert [o["code"] for o in outcomes] == [0, 0], outcomes
  files = sorted(os.listdir(tmp_path / "a"))
  assert files == sorted(os.listdir(tmp_path / "b"))
  for name in files:
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
  manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
  assert manifest["command"] == ("python -m launch.data --corpus=20news --recipe=vdsh_tfidf "
                                 f"--source={release}")
  assert manifest["counts"]["test"]["items"] + manifest["counts"]["test"]["dropped"] == 7532
  assert manifest["vocabulary_size"] == 10000
