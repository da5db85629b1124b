"""The reference of every setting (docs/config.md) is what its generator
writes, names every field of every config, and says where each value of a
resolved config comes from (--show_config); help texts read as sentences."""

import ast
import os
import pathlib
import subprocess
import sys
import textwrap

from configs import base
from hashvae import methods
from hashvae.sweep import config_check
from launch import config_doc, config_fields

from conftest import ROOT

DOC = os.path.join(ROOT, "docs", "config.md")


def test_docs_config_md_is_what_the_generator_writes():
  with open(DOC, encoding="utf-8") as f:
    written = f.read()
  assert written == config_doc.generate(), (
      "docs/config.md is out of date: run python -m launch.config_doc --out=docs/config.md")


def documented_as(name: str) -> str:
  """How field `name` is named in the reference."""
  if name.startswith("tune.ranges."):
    return "`tune.ranges.<method>.<weight>`"
  if name.startswith("weights."):
    return f"`weights.{name.split('.')[1]}`"
  return f"`{name}`"


def test_every_field_of_base_and_of_each_dataset_config_is_in_the_reference():
  with open(DOC, encoding="utf-8") as f:
    doc = f.read()
  configs = [base.base_config(tuple(methods.METHODS), 16)]
  for name, arg in config_doc.dataset_configs():
    configs.append(__import__(f"configs.{name}", fromlist=["get_config"]).get_config(arg or None))
  assert len(configs) == 1 + 9  # 8 files, newsgroups twice
  for config in configs:
    for name in config_fields.flatten(config):
      assert documented_as(name) in doc, f"{name} ({config.data.get('name')}) is not documented"
  for name in ("precision", "state_memory_budget_mb", "tune.validation_fraction",
               "data.validation_fraction", "loss.multilabel"):
    assert f"| `{name}` |" in doc
  row = next(line for line in doc.splitlines() if line.startswith("| `state_memory_budget_mb`"))
  assert "0 for one from the device" in row and "`0.0`" in row
  # Allowed values are config_check's own words.
  for field, allowed, _ in config_check.FIELD_RULES:
    row = next(line for line in doc.splitlines() if line.startswith(f"| `{field}` |"))
    assert allowed.replace("|", "\\|") in row, (field, allowed)
  # Each method's declared weights, with their defaults.
  ssb = next(line for line in doc.splitlines() if line.startswith("| `weights.ssb_vae` |"))
  assert "alpha=1, beta=1, gamma=1" in ssb


def test_comments_beside_and_above_a_field_are_its_meaning(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text(textwrap.dedent('''\
      def get_config(arg):
        c = make()
        # Two lines
        # above.
        c.a = 1  # and beside
        c.model.b = (1, 2)

        c.d = 0  # alone
        if arg:
          c.data.path = "x"  # the x file
        else:
          c.data.path = "y"  # the y file
        t = c.tune
        t.kind = "grid"  # a tune field
        return c
      '''))
  comments = config_fields.field_comments(str(path))
  assert comments["a"] == [(1, "Two lines above. and beside")]
  assert comments["model.b"] == [((1, 2), "")]
  assert comments["d"] == [(0, "alone")]
  assert comments["tune.kind"] == [("grid", "a tune field")]
  assert config_fields.comment_for(comments, "data.path", "y") == "the y file"
  assert config_fields.comment_for(comments, "data.path", "z") == "the x file"
  assert config_fields.comment_for(comments, "nope", 1) == ""


def test_each_field_is_marked_with_its_source():
  base_fields = {"bits": 16, "epochs": 30, "ks": (100,), "seeds": (0,), "methods": ("a",)}
  file_fields = dict(base_fields, epochs=60, **{"data.path": "p"})
  final = dict(file_fields, ks=(100,), seeds=(1,))
  marks = config_fields.sources(base_fields, file_fields, final, {"ks", "seeds"})
  assert marks == {"bits": "config file", "epochs": "config file", "ks": "override",
                   "seeds": "override", "methods": "config file", "data.path": "config file"}
  assert config_fields.sources(base_fields, base_fields, base_fields, set())["epochs"] == "default"


def test_show_config_prints_sources_and_trains_nothing(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.main",
       f"--config={ROOT}/configs/synthetic.py:method=ssb_vae", "--config.epochs=2",
       "--show_config"],
      cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  assert "override     epochs = 2" in lines
  assert "config file  batch_size = 32" in lines  # synthetic.py changes base.py's 100
  assert "default      learning_rate = 0.001" in lines
  assert "config file  data.train_size = 160" in lines
  assert "config file  methods = ('ssb_vae',)" in lines
  assert "epoch 1/2" not in proc.stderr and os.listdir(tmp_path) == []


ENTRY_POINTS = sorted(p.stem for p in pathlib.Path(ROOT, "launch").glob("*.py")
                      if p.stem != "__init__")

# Imports each entry point in turn and prints each flag of a launch module
# whose help is empty or holds a run of spaces (implicit concatenation across
# lines), then forgets the entry point's flags so that the next may define
# the same names. absl's own flags are not ours to check.
FLAG_HELP_CHECK = """
import importlib, sys
from absl import flags
for name in sys.argv[1:]:
  importlib.import_module("launch." + name)
  for module, defined in flags.FLAGS.flags_by_module_dict().items():
    for flag in defined if module.startswith("launch.") else ():
      if "  " in (flag.help or "") or not (flag.help or "").strip():
        print(module, flag.name, repr(flag.help))
  for flag in list(flags.FLAGS.flags_by_module_dict().get("launch." + name, ())):
    delattr(flags.FLAGS, flag.name)
"""


def test_flag_help_strings_have_no_runs_of_spaces():
  proc = subprocess.run([sys.executable, "-c", FLAG_HELP_CHECK, *ENTRY_POINTS], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout == "", proc.stdout


def test_usage_docstrings_keep_their_lines():
  """--help prints the module docstring: a backslash ending a line of a
  non-raw docstring joins the next line onto it, with its indentation."""
  for name in ENTRY_POINTS:
    path = pathlib.Path(ROOT, "launch", f"{name}.py")
    node = ast.parse(path.read_text()).body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value.value, str), name
    assert node.value.value.count("\n") == node.end_lineno - node.lineno, (
        f"{path}: a line of its docstring is joined to the next (make it r\"\"\"...)")
