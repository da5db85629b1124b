"""The fields of an experiment config: where each value comes from, and what
the config files' comments say about it.

Shared by the reference of every setting (launch.config_doc) and
`launch.main --show_config`. A field's source is "default" (configs/base.py),
"config file" (the dataset config file, with its argument, changed it) or
"override" (a --config.<field> flag).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import os
import tokenize

from configs import base

SOURCES = ("default", "config file", "override")
# Chosen by the config file (its argument's defaults): configs/base.py has none.
FILE_CHOSEN = ("methods", "bits")


def flatten(config, prefix: str = "") -> dict:
  """{dotted field: value} of every leaf of a ConfigDict (or dict), in key
  order; a group of fields is not a leaf, and an empty group has none."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if hasattr(value, "items"):
      out.update(flatten(value, name + "."))
    else:
      out[name] = tuple(value) if isinstance(value, list) else value
  return out


def load_file(spec: str):
  """'configs/x.py:arg' -> the config its get_config(arg) returns."""
  path, _, arg = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("hashvae_config_file", path)
  if module_spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def base_of(config):
  """configs/base.py's config for the methods and code length of `config`."""
  return base.base_config(tuple(config.methods), config.bits)


def sources(base_fields: dict, file_fields: dict, final_fields: dict,
            overridden) -> dict:
  """{field: source} of every field of `final_fields`: "override" when a
  flag named it (even with the value it had), else "config file" when the
  file's value differs from configs/base.py's (or base.py lacks the field,
  as every data field), else "default"."""
  missing = object()
  out = {}
  for name in final_fields:
    if name in overridden:
      out[name] = "override"
    elif name in FILE_CHOSEN or base_fields.get(name, missing) != file_fields.get(name):
      out[name] = "config file"
    else:
      out[name] = "default"
  return out


def resolved_text(spec: str, final, overridden) -> str:
  """`final` (the config `spec` gave, with the flags `overridden` applied),
  one field a line, each marked with its source."""
  from_file = load_file(spec)
  marks = sources(flatten(base_of(from_file)), flatten(from_file), flatten(final),
                  set(overridden))
  counts = ", ".join(f"{sum(v == s for v in marks.values())} {s}" for s in SOURCES)
  lines = [f"# --config={spec}: {len(marks)} fields ({counts}); default = "
           "configs/base.py, config file = the file and its argument, override = "
           "a --config.<field> flag"]
  lines += [f"{marks[name]:<12} {name} = {value!r}" for name, value in flatten(final).items()]
  return "\n".join(lines)


# --- the comments beside each field ---------------------------------------------

def _field_name(target: ast.expr):
  """'data.path' for `c.data.path` ('tune.kind' for tune_block's `t.kind`),
  None for any other target."""
  parts = []
  while isinstance(target, ast.Attribute):
    parts.append(target.attr)
    target = target.value
  if not parts or not isinstance(target, ast.Name) or target.id not in ("c", "t"):
    return None
  return ".".join((["tune"] if target.id == "t" else []) + parts[::-1])


def _literal(node: ast.expr):
  try:
    return ast.literal_eval(node)
  except ValueError:
    return None


def field_comments(path: str) -> dict:
  """{field: [(value or None, comment)]} of a config file: for each
  `c.<field> = ...` (`t.<field>`: tune.<field>), the comment lines right
  above it and the comment at the end of its lines, with the assigned value
  when it is a literal (a field set in two branches has two entries)."""
  with open(path, encoding="utf-8") as f:
    source = f.read()
  lines = source.splitlines()
  trailing = {}
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1].strip() != tok.string:
      trailing[tok.start[0]] = tok.string
  out = {}
  for node in ast.walk(ast.parse(source)):
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
      continue
    name = _field_name(node.targets[0])
    if name is None:
      continue
    beside = [trailing[n] for n in range(node.lineno, node.end_lineno + 1) if n in trailing]
    text = " ".join([comment_above(lines, node.lineno)]
                    + [c.lstrip("#").strip() for c in beside]).strip()
    out.setdefault(name, []).append((_literal(node.value), text))
  return out


def comment_above(lines: list[str], lineno: int) -> str:
  """The comment lines right above line `lineno` (1-based), as one text."""
  above, i = [], lineno - 2
  while i >= 0 and lines[i].strip().startswith("#"):
    above.insert(0, lines[i].strip().lstrip("#").strip())
    i -= 1
  return " ".join(above)


def comment_for(comments: dict, name: str, value) -> str:
  """The comment of field `name` whose assigned literal is `value` (else
  the first one given; '' when the file has none)."""
  entries = comments.get(name, [])
  for literal, text in entries:
    if literal == value and text:
      return text
  return next((text for _, text in entries if text), "")
