"""A sweep's folder: one config per workdir, so a re-run resumes the same sweep."""

from __future__ import annotations

import json
import os
import shutil

from hashvae import results

# What a sweep writes besides config.json; --restart removes these.
OUTPUTS = ("checkpoints", "methods", "results.csv", "codes.npz", "metrics.jsonl",
           "tensorboard", "summary.md", "summary.tex", "p_at_100.png",
           "training_curves.png")


class WorkdirError(ValueError):
  """The workdir holds a sweep that does not match this config."""


def flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: tree}


def differing_fields(old: dict, new: dict) -> list[str]:
  a, b = flatten(old), flatten(new)
  return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def prepare(workdir: str, config_dict: dict, restart: bool = False):
  """Creates or re-opens `workdir` for this config.

  A workdir whose config.json differs fails with the differing fields named,
  unless `restart`, which removes the previous sweep's outputs first.
  """
  os.makedirs(workdir, exist_ok=True)
  config_dict = json.loads(json.dumps(config_dict))  # tuples -> lists, as stored
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path) and not restart:
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
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
  results.write_json(path, config_dict)
