r"""Writes docs/config.md, the reference of every config setting.

    python -m launch.config_doc --out=docs/config.md
    python -m launch.config_doc          # to stdout

Generated, never written by hand: a field's meaning is the comment beside
it in configs/*.py, its default the value there, its allowed values the
words config_check uses to refuse it (FIELD_RULES), and the methods'
weights and options come from their declarations (hashvae.methods).
tests/test_config_doc.py fails when docs/config.md differs from this output.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import importlib
import os

from absl import app, flags

from configs import base
from hashvae import data, methods
from hashvae.methods import blocks
from hashvae.sweep import config_check
from hashvae.tuning import tune_space
from launch import config_fields, errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_FILE = os.path.join(ROOT, "configs", "base.py")
BLOCKS = "hashvae/methods/blocks.py"  # says what the options the methods share do
# Config files documented under more than one argument (the first: the default).
VARIANTS = {"newsgroups": ("", "source=mat")}
SWEEP = "main, tune, reproduce"
# Read again from a finished sweep's config.json to rebuild its encoder.
INDEX_READS = ("bits", "model.hidden", "model.batch_norm", "extra_modules")

# (allowed, meaning) of fields checked or explained outside FIELD_RULES and
# the config files' comments.
SPECIAL = {
    "methods": ("names of registered methods (see Methods)", ""),
    "data.name": (f"one of {sorted(data.LOADERS)}", "the loader that reads the data"),
    "tune.kind": (f"one of {tune_space.KINDS}", ""),
}

_OUT = flags.DEFINE_string("out", None, "File to write (default: standard output).")


def cell(text) -> str:
  """Text safe in a markdown table cell (no column break, tag or emphasis)."""
  for a, b in (("|", "\\|"), ("*", "\\*"), ("<", "&lt;")):
    text = str(text).replace(a, b)
  return text


def code(value) -> str:
  return "`" + repr(value).replace("|", "\\|") + "`"


def readers(name: str) -> str:
  """The commands (python -m launch.<name>) that read field `name`."""
  if name.startswith("tune."):
    return "tune, reproduce --tune"
  reread = name.startswith("data.") or name in INDEX_READS
  return SWEEP + (", index" if reread else "")


def by_type(value) -> str:
  """Allowed values as the field's type says them (ConfigDict keeps types)."""
  if value is None:
    return "unset, or an integer"
  if isinstance(value, bool):
    return "True or False"
  if isinstance(value, (tuple, list)):
    kinds = {type(v) for v in value}
    return "a tuple of numbers" if kinds <= {int, float} and kinds else "a tuple"
  return {int: "an integer", float: "a number", str: "text"}.get(type(value), "")


def allowed(name: str, value) -> str:
  """config_check's words for the field, else those of SPECIAL, else its type's."""
  rules = [text for field, text, _ in config_check.FIELD_RULES if field == name]
  return "; ".join(rules) or SPECIAL.get(name, ("", ""))[0] or by_type(value)


def meaning(comments: dict, name: str, value) -> str:
  return (config_fields.comment_for(comments, name, value) or SPECIAL.get(name, ("", ""))[1]
          or "(no comment beside it in its config file)")


def table(header, rows) -> list[str]:
  return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
          *["| " + " | ".join(row) + " |" for row in rows], ""]


def field_rows(fields: dict, comments: dict) -> list:
  """Rows (field, default, allowed, read by, meaning) of shared fields."""
  rows = []
  for name, value in fields.items():
    default = "the config file's argument" if name in config_fields.FILE_CHOSEN else code(value)
    rows.append((f"`{name}`", default, cell(allowed(name, value)), readers(name),
                 cell(meaning(comments, name, value))))
  return rows


def shared_section(fields: dict, comments: dict) -> list[str]:
  plain = {k: v for k, v in fields.items()
           if not k.startswith(("weights.", "loss.", "tune.", "data."))}
  tune = {k: v for k, v in fields.items()
          if k.startswith("tune.") and not k.startswith("tune.ranges.")}
  header = ("field", "default", "allowed", "read by", "meaning")
  ranges = ("`tune.ranges.<method>.<weight>`", cell("declared value / 1e3 .. * 1e3"),
            cell("(low, high) with 0 < low <= high (log-uniform)"), "tune, reproduce --tune",
            cell(config_fields.comment_for(comments, "tune.ranges", None)))
  return ["## Shared fields (configs/base.py)", "",
          *table(header, field_rows(plain, comments)),
          "## The weight search: `tune.*` (launch.tune)", "",
          *table(header, field_rows(tune, comments) + [ranges])]


def option_home(name: str) -> str:
  """The file that says what option `name` does."""
  shared = {**blocks.RECONSTRUCTION, **blocks.LABELS, **blocks.PAIRS, **blocks.PREDICTED_PAIRS}
  if name in shared:
    return BLOCKS
  m = next(m for m in methods.METHODS.values() if name in m.options)
  module = (m.objective or m.fit).__module__
  return module.replace(".", "/") + ".py"


def option_notes() -> dict:
  """{option: the comment above the `dict(option=...)` declaring it in
  hashvae/methods/blocks.py}, the options the methods share."""
  with open(os.path.join(ROOT, BLOCKS), encoding="utf-8") as f:
    source = f.read()
  lines, out = source.splitlines(), {}
  for node in ast.parse(source).body:
    if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "dict"):
      note = config_fields.comment_above(lines, node.lineno)
      for keyword in node.value.keywords if note else ():
        out.setdefault(keyword.arg, note)
  return out


def first_paragraph(text: str) -> str:
  return " ".join(text.strip().split("\n\n")[0].split())


def methods_section() -> list[str]:
  rows, options, notes = [], {}, option_notes()
  for m in methods.METHODS.values():
    weights = ", ".join(f"{k}={v:g}" for k, v in m.weights.items()) or "none"
    rows.append((f"`weights.{m.name}`", weights, f"`{m.extends}`" if m.extends else "",
                 "fitted" if m.fit else "trained", cell(first_paragraph(m.doc))))
    for k, v in m.options.items():
      options.setdefault(k, (v, m.choices.get(k), []))[2].append(m.name)
  option_rows = [(f"`loss.{k}`", code(v), cell(methods.registry.describe(c) if c else by_type(v)),
                  ", ".join(names), cell(notes.get(k) or f"see {option_home(k)}"))
                 for k, (v, c, names) in options.items()]
  return ["## Methods: `weights.<method>.<weight>` and `loss.<option>`", "",
          "Each registered method declares its weights (traced: one value per run, "
          "so a sweep over levels and weights is one program) with defaults, and its "
          "static options with their allowed values (hashvae/methods/registry.py). "
          "`weights.<method>.<weight>` holds one value (every level) or one per level; "
          "`weights.<method>.levels` names the levels of those values (empty: one per "
          "entry of `levels`). Weights: finite values >= 0. Read by: " + SWEEP + ".", "",
          *table(("block", "weights (declared defaults)", "extends", "kind", "what it trains"),
                 rows),
          "Options, one value for every method of a sweep that declares them:", "",
          *table(("field", "default", "allowed", "declared by", "meaning"),
                 option_rows)]


def argument_defaults(path: str) -> dict:
  """The config argument's keys and defaults (`parse_arg` or `study_config`
  in the file; study_config's own from configs/base.py)."""
  def calls(file, name):
    with open(file, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "attr", getattr(n.func, "id", None)) == name]
  def keywords(call):
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords
            if k.arg and k.arg != "weights_key"}
  own, study = calls(path, "parse_arg"), calls(path, "study_config")
  if own or not study:
    return keywords(own[0]) if own else {}
  shared = next(c for c in calls(BASE_FILE, "parse_arg")
                if any(k.arg == "grid" and ast.literal_eval(k.value) == "released"
                       for k in c.keywords))
  return {**keywords(shared), **keywords(study[0])}


def what_file_sets(config, comments: dict) -> list[str]:
  """Lines: the shared fields the file changes from configs/base.py."""
  mine = config_fields.flatten(config)
  default = config_fields.flatten(config_fields.base_of(config))
  lines, blocks_set = [], []
  for name, value in mine.items():
    if name.startswith("data.") or name.startswith("tune.ranges.") or default.get(name) == value:
      continue
    if name.startswith("weights."):
      method = name.split(".")[1]
      blocks_set += [method] if method not in blocks_set else []
      continue
    note = config_fields.comment_for(comments, name, value)
    lines.append(f"- `{name}` = {code(value)}" + (f": {cell(note)}" if note else ""))
  if blocks_set:
    lines.append(f"- `weights` of {', '.join(blocks_set)}: its own values (see the file)")
  return lines


def dataset_section(name: str, arg: str) -> list[str]:
  path = os.path.join(ROOT, "configs", f"{name}.py")
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(arg or None)
  comments = config_fields.field_comments(path)
  fields = {k: v for k, v in config_fields.flatten(config).items() if k.startswith("data.")}
  rows = [(f"`{k}`", code(v), cell(allowed(k, v)), cell(meaning(comments, k, v)))
          for k, v in fields.items()]
  spec = data.SPECS[config.data.name]
  extra = [f"`{f.name}` = {code(f.default)}" for f in dataclasses.fields(spec)
           if f"data.{f.name}" not in fields]
  arguments = ", ".join(f"`{k}={v}`" for k, v in argument_defaults(path).items())
  title = f"configs/{name}.py" + (f":{arg}" if arg else "")
  return [f"### {title}", "", cell(module.__doc__.strip().splitlines()[0]), "",
          f"Argument (after the colon), with its defaults: {arguments or 'none'}. "
          "Changes from configs/base.py:", "", *what_file_sets(config, comments), "",
          *table(("field", "default", "allowed", "meaning"), rows),
          *([f"The loader ({config.data.name}) also takes, at their defaults (a field "
             "the config file does not declare cannot be overridden): " + ", ".join(extra),
             ""] if extra else [])]


def dataset_configs() -> list[tuple[str, str]]:
  """(config module name, argument) of every dataset config file."""
  names = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))
  return [(n, arg) for n in names if n not in ("base", "__init__")
          for arg in VARIANTS.get(n, ("",))]


def generate() -> str:
  """docs/config.md's text."""
  everything = base.base_config(tuple(methods.METHODS), 16)
  comments = config_fields.field_comments(BASE_FILE)
  lines = [
      "# Config reference", "",
      "Generated by `python -m launch.config_doc --out=docs/config.md` from the "
      "comments beside each field in configs/*.py, the checks of "
      "hashvae/sweep/config_check.py and the methods' declarations; "
      "tests/test_config_doc.py fails when this file is not what the generator "
      "writes. Do not edit it: edit the comment in the config file and regenerate.", "",
      "Set a field with `--config.<field>=<value>` (a tuple as one quoted value, "
      "`--config.ks='(10,100)'`), in launch.reproduce with `--set='<field>=<value>,...'`, "
      "in a notebook as `api.run(..., **{'<field>': value})`. "
      "`python -m launch.main --config=... --show_config` prints the resolved config, "
      "each field marked `default` (configs/base.py), `config file` (the dataset "
      "config file changed it) or `override` (a --config flag).", "",
      "\"read by\" names the commands (`python -m launch.<name>`) that read the field: "
      "main trains a sweep, tune searches the weights on validation and then trains "
      "the chosen ones, reproduce runs the study's cells (with --tune, a tune in "
      "each), index reloads a finished sweep's data and network from its config.json.", "",
      *shared_section(config_fields.flatten(everything), comments),
      *methods_section(),
      "## Dataset configs: `data.*` and what each file changes", "",
      "Every `data.*` field is read by main, tune, reproduce and index. A validation "
      "split matters to launch.tune alone (a sweep's database is train and "
      "validation together): snippets, newsgroups, table and svmlight hold out "
      "`data.validation_fraction` of the training items (or read "
      "`data.validation_path`), TMC's .mat file and "
      "synthetic bring their own, and data without one (digits, CIFAR features) has "
      "`tune.validation_fraction` of its training split held out for the search.", ""]
  for name, arg in dataset_configs():
    lines += dataset_section(name, arg)
  return "\n".join(lines).rstrip() + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  text = generate()
  if _OUT.value:
    with open(_OUT.value, "w", encoding="utf-8") as f:
      f.write(text)
  else:
    print(text, end="")


if __name__ == "__main__":
  errors.run(main)
