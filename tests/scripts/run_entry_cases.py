"""Runs many command lines of one entry point in this one process.

    python tests/scripts/run_entry_cases.py launch.main < cases.json > outcomes.json

cases.json: a list of argv lists (argv[0] is the program name). For each,
the entry point's cli(argv) runs with its flags reset, stdout and stderr
captured at the file-descriptor level; outcomes.json holds one
{"code", "stdout", "stderr", "seconds"} per case. An exception that escapes cli (a
bug, not an error the boundary recognises) is recorded with code
"uncaught" and its traceback. One process per entry point keeps the cost of
importing jax to once for all of its cases.
"""

import importlib
import json
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
# A device count from the environment: the entry points then leave jax's CPU
# alone (sharding.split_cpu), which they may configure only once a process.
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "1")

from absl import flags  # noqa: E402


def reset_flags():
  """Flags back to their defaults; config override flags (--config.x),
  which ml_collections defines while parsing, removed."""
  # Also after a parse that failed half-way (is_parsed() is then False but
  # the flags before the bad one hold their values).
  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if "." in n]:
    delattr(flags.FLAGS, name)


def run_case(cli, argv) -> dict:
  reset_flags()
  saved = os.dup(1), os.dup(2)
  with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.perf_counter()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
      cli(list(argv))
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001  recorded: the test reports it
      traceback.print_exc()
      code = "uncaught"
    finally:
      sys.stdout.flush()
      sys.stderr.flush()
      os.dup2(saved[0], 1)
      os.dup2(saved[1], 2)
      for fd in saved:
        os.close(fd)
    out.seek(0)
    err.seek(0)
    return dict(code=code, stdout=out.read().decode("utf-8", "replace"),
                stderr=err.read().decode("utf-8", "replace"),
                seconds=time.perf_counter() - start)


def main():
  module = importlib.import_module(sys.argv[1])
  cases = json.load(sys.stdin)
  outcomes = [run_case(module.cli, argv) for argv in cases]
  json.dump(outcomes, sys.stdout)


if __name__ == "__main__":
  main()
