"""A sweep's folder: one config per workdir, so a re-run resumes the same sweep.

Files a sweep reads back are checked before they are used: a damaged
config.json is reported by name (it cannot be replaced: it says which sweep
the folder holds); a damaged finished method (methods/<method>.npz or its
.variables folder) is moved aside and that method trained again; a damaged
results.csv is reported with its line and column.
"""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os
import shutil
import zipfile
from typing import Optional

import numpy as np

from hashvae.store import results

log = logging.getLogger("hashvae")

# What a sweep writes besides config.json; --restart removes these.
OUTPUTS = ("checkpoints", "methods", "results.csv", "codes.npz", "metrics.jsonl",
           "tensorboard", "summary.md", "summary.tex", "p_at_100.png",
           "training_curves.png", "pr_radius.png")

# results.csv columns the reports need; every metric column (a name with
# "@") must hold numbers.
RESULT_COLUMNS = ("dataset", "bits", "method", "level")


class WorkdirError(ValueError):
  """The workdir holds a sweep that does not match this config, or cannot be
  used (a file, not writable, a damaged file)."""


def flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


# Where runs are placed, not what they compute: chunk layouts checkpoint in
# folders of their own, so a sweep resumes under another placement.
PLACEMENT_FIELDS = ("devices", "state_memory_budget_mb", "cpu_runs_per_chunk")


def differing_fields(old: dict, new: dict) -> list[str]:
  """The config fields of a workdir's `old` config that `new` changes or
  drops. A field `old` lacks was added to hashvae after that sweep was
  written (precision, data.id_column): its default is what the sweep ran
  with, so it is not compared. Placement fields are never compared."""
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b)
                if k not in PLACEMENT_FIELDS and k in a and a[k] != b.get(k, "<absent>"))


RUNTIME = "runtime"  # config.json's record of the devices and precision, not a config field


def read_config(path: str) -> dict:
  """A workdir's config.json, its "runtime" record left out (read_runtime);
  WorkdirError naming the file if it is damaged."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{path} is damaged (not valid JSON: {e}); restore it, or "
                       "pass --restart to discard this workdir's sweep") from e
  if not isinstance(value, dict):
    raise WorkdirError(f"{path} is damaged (not a JSON object); restore it, or pass "
                       "--restart to discard this workdir's sweep")
  return {k: v for k, v in value.items() if k != RUNTIME}


def read_runtime(path: str) -> dict:
  """config.json's "runtime" record ({} for a sweep written before it existed)."""
  with open(path, encoding="utf-8") as f:
    return json.load(f).get(RUNTIME, {})


def check_folder(workdir: str):
  """WorkdirError unless `workdir` is (or can be made) a writable folder."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir={workdir} is a file, not a folder: give a folder path")
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir}: cannot create the folder "
                       f"({e.strerror})") from e
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f"--workdir={workdir} is not writable: give a folder you may "
                       "write to")


def prepare(workdir: str, config_dict: dict, restart: bool = False,
            runtime: Optional[dict] = None):
  """Creates or re-opens `workdir` for this config.

  A workdir whose config.json differs fails with the differing fields named,
  unless `restart`, which removes the previous sweep's outputs first.
  Finished methods whose files are damaged are moved aside (trained again).
  `runtime` (platform, devices, precision, ...) is stored beside the config
  as config.json's "runtime" when the file is written; it is not compared.
  """
  check_folder(workdir)
  config_dict = json.loads(json.dumps(config_dict))  # tuples -> lists, as stored
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path) and not restart:
    old = read_config(path)
    diff = differing_fields(old, config_dict)
    if diff:
      shown = ", ".join(f"{k} ({flatten(old).get(k, '<absent>')!r} -> "
                        f"{flatten(config_dict).get(k, '<absent>')!r})" for k in diff)
      raise WorkdirError(f"{workdir} holds a sweep with a different config: {shown}. "
                         "Use another --workdir, or pass --restart to discard it.")
  if restart:
    for name in OUTPUTS:
      target = os.path.join(workdir, name)
      if os.path.isdir(target):
        shutil.rmtree(target)
      elif os.path.exists(target):
        os.remove(target)
  else:
    set_aside_damaged_methods(workdir)
  if restart or not os.path.exists(path):  # an unchanged config.json is left alone
    results.write_json(path, dict(config_dict, **({RUNTIME: runtime} if runtime else {})))


def method_damage(workdir: str, method: str) -> str:
  """Why the finished method's files cannot be used ('' if they can):
  methods/<method>.npz must be a complete archive (every member's CRC) and
  its .variables folder must hold complete .npy files."""
  damage = archive_damage(os.path.join(workdir, "methods", f"{method}.npz"))
  if damage:
    return damage
  folder = os.path.join(workdir, "methods", f"{method}.variables")
  if not os.path.isdir(folder):
    return f"{folder} is missing"
  for name in sorted(os.listdir(folder)):
    if name.endswith(".npy"):
      try:
        np.load(os.path.join(folder, name), mmap_mode="r")
      except (OSError, ValueError, EOFError) as e:
        return f"{os.path.join(folder, name)}: {e}"
  return ""


def set_aside_damaged_methods(workdir: str) -> list[str]:
  """Moves each damaged finished method's files aside (renamed
  `<name>.corrupt-<time>`, inside methods/ so that --restart removes them),
  with a warning: the sweep then trains that method again. Returns the
  methods moved."""
  folder = os.path.join(workdir, "methods")
  if not os.path.isdir(folder):
    return []
  moved = []
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".npz"):
      continue
    method = name[:-len(".npz")]
    damage = method_damage(workdir, method)
    if not damage:
      continue
    for suffix in (".npz", ".variables"):
      source = os.path.join(folder, method + suffix)
      if os.path.exists(source):
        os.rename(source, f"{source}.corrupt-{stamp}")
    log.warning("%s: the finished method's files cannot be read (%s); moved them "
                "aside (*.corrupt-%s), and the method is trained again", method,
                damage, stamp)
    moved.append(method)
  return moved


def read_results(path: str) -> list[dict]:
  """A results.csv's rows, numbers parsed as results.read_csv does;
  WorkdirError naming the file, line and column of the first cell the
  reports cannot use."""
  try:
    with open(path, newline="", encoding="utf-8") as f:
      raw = list(csv.DictReader(f))
  except UnicodeDecodeError as e:
    raise WorkdirError(f"{path} is not UTF-8 text (byte {e.start}): not a "
                       "results.csv") from e
  except csv.Error as e:
    raise WorkdirError(f"{path}: not a readable CSV file ({e})") from e
  if not raw:
    raise WorkdirError(f"{path} holds no rows")
  missing = [c for c in RESULT_COLUMNS if c not in raw[0]]
  if missing:
    raise WorkdirError(f"{path} lacks the columns {missing}: not a results.csv of "
                       "this project")
  rows = []
  for line, row in enumerate(raw, start=2):  # line 1 is the header
    if None in row or None in row.values():
      raise WorkdirError(f"{path}:{line}: {'more' if None in row else 'fewer'} cells "
                         "than columns (a truncated or edited file?)")
    rows.append({k: results.parse_cell(v) for k, v in row.items()})
    for column, value in rows[-1].items():
      numeric = "@" in column or column in ("bits", "level")
      if numeric and value != "" and not isinstance(value, (int, float)):
        raise WorkdirError(f"{path}:{line}: column {column} holds {value!r}, not a "
                           "number")
  return rows


def archive_damage(path: str) -> str:
  """Why the .npz at `path` cannot be read ('' if it can): every member's CRC."""
  try:
    with zipfile.ZipFile(path) as archive:
      bad = archive.testzip()
    return f"{path}: member {bad} is damaged" if bad is not None else ""
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    return f"{path}: {e}"


def check_finished(workdir: str):
  """WorkdirError naming the first file of a finished sweep that is missing or
  cannot be read: config.json, results.csv, codes.npz, and each finished
  method's files."""
  if not os.path.isdir(workdir):
    raise WorkdirError(f"{workdir}: no such folder (give a finished sweep's --workdir)")
  for name in ("config.json", "results.csv", "codes.npz"):
    if not os.path.isfile(os.path.join(workdir, name)):
      raise WorkdirError(f"{workdir} holds no finished sweep ({name} is missing)")
  read_config(os.path.join(workdir, "config.json"))
  read_results(os.path.join(workdir, "results.csv"))
  damage = archive_damage(os.path.join(workdir, "codes.npz"))
  if damage:
    raise WorkdirError(f"{damage}: rerun the sweep's command to write it again")
  folder = os.path.join(workdir, "methods")
  for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
    if name.endswith(".npz"):
      damage = method_damage(workdir, name[:-len(".npz")])
      if damage:
        raise WorkdirError(f"{damage}: rerun the sweep's command to train that method "
                           "again")
