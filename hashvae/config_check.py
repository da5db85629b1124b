"""Checks a config before anything is loaded or compiled.

Each failure names the field and what is allowed.
"""

from __future__ import annotations

import importlib
import math

from hashvae import data, methods, train


class ConfigError(ValueError):
  """A config field holds a value that is not allowed."""


def apply_overrides(config, overrides: dict):
  """config with the dotted-name `overrides` applied; a name that is not a
  field of the config fails naming it (an unlocked ConfigDict would add it
  as a new field and the intended one would silently keep its value).

  The config is locked first, and stays locked.
  """
  config.lock()
  for name, value in overrides.items():
    try:
      config.update_from_flattened_dict({name: value})
    except (KeyError, AttributeError) as e:
      raise ConfigError(f"unknown config field {name!r} (set to {value!r})") from e
    except TypeError as e:  # ConfigDict keeps each field's type
      raise ConfigError(f"config.{name}={value!r}: {e}") from e
  return config


def import_extra_modules(config):
  """Imports config.extra_modules (comma-separated), e.g. to register methods."""
  for name in filter(None, (n.strip() for n in config.extra_modules.split(","))):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ConfigError(f"config.extra_modules: cannot import {name!r}: {e}") from e


def level_values(block, key: str, levels, where: str) -> tuple:
  """The `key` weight (alpha, beta or gamma) of a weights block for each level.

  A block holds one value (every level), one per entry of its own `levels`
  (looked up by level), or, with `levels` empty, one per config level.
  """
  values, own = tuple(block[key]), tuple(block.get("levels", ()))
  if len(values) == 1:
    return values * len(levels)
  if own:
    if len(values) != len(own):
      raise ConfigError(f"config.{where}.{key}: {len(values)} values for "
                        f"{len(own)} entries of {where}.levels")
    out = []
    for level in levels:
      match = [v for lv, v in zip(own, values, strict=True) if abs(lv - level) < 1e-9]
      if not match:
        raise ConfigError(f"config.{where}.{key}: no weight for level {level:g} "
                          f"(has levels {own})")
      out.append(match[0])
    return tuple(out)
  if len(values) != len(levels):
    raise ConfigError(f"config.{where}.{key}={values!r}: one value, or one per level "
                      f"({len(levels)})")
  return values


def weights_block(config, method: str):
  """(block, its name): config.weights[method], or config.weights.default."""
  name = method if method in config.weights else "default"
  return config.weights[name], f"weights.{name}"


def check(config):
  def need(ok, field, allowed, value):
    if not ok:
      raise ConfigError(f"config.{field}={value!r}: {allowed}")

  need(len(config.methods) > 0, "methods", "name at least one method",
       config.methods)
  for m in config.methods:
    need(m in methods.METHODS, "methods", f"unknown method {m!r}; known: "
         f"{sorted(methods.METHODS)}", tuple(config.methods))
  need(config.data.name in data.LOADERS, "data.name",
       f"unknown dataset; known: {sorted(data.LOADERS)}", config.data.name)
  need(isinstance(config.bits, int) and config.bits >= 1, "bits",
       "an integer >= 1", config.bits)
  need(len(config.seeds) > 0, "seeds", "at least one seed", config.seeds)
  need(len(config.levels) > 0, "levels", "at least one level", config.levels)
  for level in config.levels:
    need(0.0 <= level <= 1.0, "levels", "every level must lie in [0, 1]",
         tuple(config.levels))
  for m in config.methods:
    block, where = weights_block(config, m)
    for k in ("alpha", "beta", "gamma"):
      values = level_values(block, k, tuple(config.levels), where)
      need(all(math.isfinite(v) and v >= 0 for v in values),
           f"{where}.{k}", "finite values >= 0", tuple(block[k]))
  for field in ("learning_rate", "temperature"):
    value = config[field]
    need(math.isfinite(value) and value > 0, field, "a finite value > 0", value)
  for field in ("epochs", "batch_size", "eval_batch_size"):
    need(config[field] >= 1, field, "an integer >= 1", config[field])
  need(config.state_memory_budget_mb > 0, "state_memory_budget_mb", "a size in MB > 0",
       config.state_memory_budget_mb)
  need(isinstance(config.cpu_runs_per_chunk, int) and config.cpu_runs_per_chunk >= 0,
       "cpu_runs_per_chunk", "an integer >= 0 (0: no cap)", config.cpu_runs_per_chunk)
  need(config.devices >= 0, "devices", "a device count >= 0 (0: all)", config.devices)
  need(config.checkpoint_every >= 0, "checkpoint_every",
       "epochs between checkpoints, >= 0 (0: only at the end)", config.checkpoint_every)
  need(config.checkpoints_to_keep >= 1, "checkpoints_to_keep", "an integer >= 1",
       config.checkpoints_to_keep)
  need(all(k >= 1 for k in config.ks) and len(config.ks) > 0, "ks",
       "cut-offs >= 1", tuple(config.ks))
  need(all(w >= 1 for w in config.model.hidden), "model.hidden",
       "widths >= 1", tuple(config.model.hidden))
  need(config.loss.pair_reduction in ("sum", "mean"), "loss.pair_reduction",
       "'sum' or 'mean'", config.loss.pair_reduction)
  need(config.loss.multilabel in ("softmax", "sigmoid"), "loss.multilabel",
       "'softmax' or 'sigmoid'", config.loss.multilabel)
  need(config.loss.reconstruction in ("softmax", "gaussian"),
       "loss.reconstruction", "'softmax' or 'gaussian'",
       config.loss.reconstruction)
  need(config.model.sparse_input in ("auto", "sparse", "dense"),
       "model.sparse_input", "'auto', 'sparse' or 'dense'",
       config.model.sparse_input)
  need(config.optimizer in ("exact", "fast"), "optimizer",
       "'exact' or 'fast'", config.optimizer)
  need(config.optimizer != "fast" or config.model.sparse_input != "dense",
       "optimizer", "'fast' needs the sparse input path (model.sparse_input "
       "'auto' or 'sparse')", config.optimizer)


def check_against_data(config, dataset):
  """What can only be checked once the data is loaded, before compiling."""
  database_size = len(dataset.database)
  if (config.optimizer == "fast"
      and not train.use_sparse_input(config.model.sparse_input, dataset)):
    raise ConfigError(f"config.optimizer='fast' needs the sparse input path, and "
                      f"model.sparse_input={config.model.sparse_input!r} resolves "
                      f"to dense for {dataset.name} (set it to 'sparse', or use "
                      "optimizer='exact')")
  if any(k > database_size for k in config.ks):
    raise ConfigError(f"config.ks={tuple(config.ks)!r}: every cut-off must be at most "
                      f"the database size ({database_size} items)")
  if config.batch_size > database_size:
    raise ConfigError(f"config.batch_size={config.batch_size}: at most the training "
                      f"set size ({database_size} items)")
