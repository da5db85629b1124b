"""Checks a config before anything is loaded or compiled.

Each failure names the field and what is allowed.
"""

from __future__ import annotations

import difflib
import math

from hashvae import data, methods
from hashvae.core import optim, sparse
from hashvae.retrieval.ranking import RANKINGS
from hashvae.training.specs import PRECISIONS


class ConfigError(ValueError):
  """A config field holds a value that is not allowed."""


def apply_overrides(config, overrides: dict):
  """config with the dotted-name `overrides` applied; a name that is not a
  field of the config fails naming it (an unlocked ConfigDict would add it
  as a new field and the intended one would silently keep its value). A
  value of another type than the field's (`seeds=5` for a tuple, text in a
  tuple of numbers) fails naming the field, the value and an example.

  The config is locked first, and stays locked.
  """
  def field(name):
    """(the field's type, its current value) of a dotted name."""
    *parents, leaf = name.split(".")
    node = config
    for part in parents:
      node = node[part]
    return node.get_type(leaf), node[leaf]

  def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)

  def wrong_type(name, value, kind, current) -> ConfigError:
    # ml_collections' own words ("(reference) ... cannot be casted to type
    # <class 'tuple'>") name Python classes; a user needs an example to type.
    if kind in (tuple, list):
      items = tuple(current or (0, 1, 2))[:3]
      example = "(" + ",".join(repr(v) for v in items) + ("," * (len(items) == 1)) + ")"
      numbers = current and all(is_number(v) for v in current)
      expected = f"a tuple{' of numbers' * bool(numbers)} such as {example}"
    elif hasattr(current, "to_dict"):  # a group of fields, set one at a time
      expected = f"a group of fields: set one, such as {name}.{next(iter(current), 'x')}=..."
    else:
      words = {bool: ("True or False", None), int: ("an integer", 10),
               float: ("a number", 0.5), str: ("a string", "text")}
      noun, default = words.get(kind, (f"a {kind.__name__}", None))
      example = current if current is not None else default
      expected = noun + (f" such as {example!r}" if example is not None else "")
    return ConfigError(f"config.{name}={value!r}: expected {expected}")

  config.lock()
  for name, value in overrides.items():
    try:
      kind, current = field(name)
    except (KeyError, AttributeError, TypeError) as e:
      raise ConfigError(f"unknown config field {name!r} (set to {value!r})") from e
    # ConfigDict takes any tuple for a tuple of numbers: its items are checked here.
    if (kind is tuple and current and all(is_number(v) for v in current)
        and isinstance(value, (tuple, list)) and not all(is_number(v) for v in value)):
      raise wrong_type(name, value, kind, current)
    try:
      config.update_from_flattened_dict({name: value})
    except TypeError as e:  # ConfigDict keeps each field's type
      raise wrong_type(name, value, kind, current) from e
  return config


def import_extra_modules(config):
  """Imports config.extra_modules."""
  methods.import_modules(config.extra_modules)


def import_modules_named_in(argv):
  """Imports the modules of a `--config.extra_modules=...` in `argv`, before
  the config file is read: a user's method must be registered for its
  config fields (weights, options) to exist and take overrides."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config.extra_modules="):
      methods.import_modules(arg.split("=", 1)[1])
    elif arg == "--config.extra_modules" and i + 1 < len(argv):
      methods.import_modules(argv[i + 1])


def level_values(values, own_levels, levels, where: str) -> tuple:
  """One weight's value for each of `levels`.

  `values` holds one value (every level), one per entry of `own_levels` (the
  block's own `levels`, looked up by level), or, with `own_levels` empty,
  one per config level.
  """
  values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
  if len(values) == 1:
    return values * len(levels)
  if own_levels:
    if len(values) != len(own_levels):
      raise ConfigError(f"config.{where}: {len(values)} values for "
                        f"{len(own_levels)} levels of the block")
    out = []
    for level in levels:
      match = [v for lv, v in zip(own_levels, values, strict=True) if abs(lv - level) < 1e-9]
      if not match:
        raise ConfigError(f"config.{where}: no weight for level {level:g} "
                          f"(has levels {own_levels})")
      out.append(match[0])
    return tuple(out)
  if len(values) != len(levels):
    raise ConfigError(f"config.{where}={values!r}: one value, or one per level "
                      f"({len(levels)})")
  return values


def weight_table(config, method: methods.Method) -> dict:
  """{weight: value per config level} of a method: config.weights.<method>
  where given, the method's declared defaults otherwise."""
  where = f"weights.{method.name}"
  given = dict(config.weights[method.name]) if method.name in config.weights else {}
  own_levels = tuple(given.pop("levels", ()))
  unknown = sorted(set(given) - set(method.weights))
  if unknown:
    raise ConfigError(f"config.{where}: {unknown} are not weights of method "
                      f"{method.name!r}; its weights: {sorted(method.weights)}")
  levels = tuple(config.levels)
  return {k: level_values(given.get(k, (default,)), own_levels, levels, f"{where}.{k}")
          for k, default in method.weights.items()}


def method_options(config, method: methods.Method, multilabel_data: bool = False):
  """The method's static options: config.loss where given, else its defaults."""
  given = {k: config.loss[k] for k in method.options if k in config.loss}
  return methods.default_options(method.name, multilabel_data, **given)


def did_you_mean(name: str, known) -> str:
  """' (did you mean 'x'?)' naming the known name nearest `name`, or ''."""
  close = difflib.get_close_matches(name, sorted(known), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def check_methods(config):
  """Methods known; their weights, options and config.loss keys declared."""
  if len(config.methods) == 0:
    raise ConfigError("config.methods=(): name at least one method")
  for m in config.methods:
    if m not in methods.METHODS:
      raise ConfigError(f"config.methods={tuple(config.methods)!r}: unknown method "
                        f"{m!r}{did_you_mean(m, methods.METHODS)}; known: "
                        f"{sorted(methods.METHODS)}")
  for name in config.weights:
    if name not in methods.METHODS:
      raise ConfigError(f"config.weights.{name}: no method {name!r} is registered"
                        f"{did_you_mean(name, methods.METHODS)}; known: "
                        f"{sorted(methods.METHODS)}")
  declared = {}
  for m in map(methods.get, config.methods):
    for k, values in weight_table(config, m).items():
      if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(f"config.weights.{m.name}.{k}={values!r}: finite values >= 0")
    for k in m.options:
      declared.setdefault(k, []).append(m.name)
    options = method_options(config, m)
    for k, allowed in m.choices.items():
      if options[k] not in allowed:
        raise ConfigError(f"config.loss.{k}={options[k]!r}: "
                          f"{methods.registry.describe(allowed)} (method {m.name!r})")
  unknown = sorted(set(config.loss) - set(declared))
  if unknown:
    raise ConfigError(f"config.loss.{unknown[0]}: not an option of the methods "
                      f"{tuple(config.methods)}; their options: {sorted(declared)}")


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


# The checks of single fields, in order: (field, what is allowed, whether a
# value is). A failure reads "config.<field>=<value>: <allowed>"; the
# reference of every setting (launch.config_doc) shows the same words.
FIELD_RULES = (
    ("bits", "an integer >= 1", lambda v: _is_int(v) and v >= 1),
    ("seeds", "at least one seed", lambda v: len(v) > 0),
    ("levels", "at least one level", lambda v: len(v) > 0),
    ("levels", "every level must lie in [0, 1]", lambda v: all(0.0 <= x <= 1.0 for x in v)),
    ("learning_rate", "a finite value > 0", lambda v: math.isfinite(v) and v > 0),
    ("temperature", "a finite value > 0", lambda v: math.isfinite(v) and v > 0),
    ("epochs", "an integer >= 1", lambda v: v >= 1),
    ("batch_size", "an integer >= 1", lambda v: v >= 1),
    ("eval_batch_size", "an integer >= 1", lambda v: v >= 1),
    ("state_memory_budget_mb", "a size in MB > 0, or 0 for one from the device",
     lambda v: v >= 0),
    ("precision", f"one of {PRECISIONS}", lambda v: v in PRECISIONS),
    ("cpu_runs_per_chunk", "an integer >= 0 (0: no cap)", lambda v: _is_int(v) and v >= 0),
    ("devices", "a device count >= 0 (0: all)", lambda v: v >= 0),
    ("checkpoint_every", "epochs between checkpoints, >= 0 (0: only at the end)",
     lambda v: v >= 0),
    ("checkpoints_to_keep", "an integer >= 1", lambda v: v >= 1),
    ("ks", "cut-offs >= 1", lambda v: len(v) > 0 and all(k >= 1 for k in v)),
    ("extra_rankings", f"names from {RANKINGS}", lambda v: all(r in RANKINGS for r in v)),
    ("model.hidden", "widths >= 1", lambda v: all(w >= 1 for w in v)),
    ("model.sparse_input", "'auto', 'sparse' or 'dense'",
     lambda v: v in ("auto", "sparse", "dense")),
    ("optimizer", f"one of {sorted(optim.OPTIMISERS)}", lambda v: v in optim.OPTIMISERS),
)


def field_value(config, field: str):
  """The value of a dotted field name ("model.hidden"); tuples as tuples."""
  node = config
  for part in field.split("."):
    node = node[part]
  return tuple(node) if isinstance(node, list) else node


def check(config):
  def need(ok, field, allowed, value):
    if not ok:
      raise ConfigError(f"config.{field}={value!r}: {allowed}")

  check_methods(config)
  need(config.data.name in data.LOADERS, "data.name",
       f"unknown dataset; known: {sorted(data.LOADERS)}", config.data.name)
  data.spec_from_fields(config.data.to_dict())  # every data field, one line if wrong
  for field, allowed, ok in FIELD_RULES:
    value = field_value(config, field)
    need(ok(value), field, allowed, value)
  need(config.optimizer != "fast" or config.model.sparse_input != "dense",
       "optimizer", "'fast' needs the sparse input path (model.sparse_input "
       "'auto' or 'sparse')", config.optimizer)


def usable_ks(config, database_size: int) -> tuple:
  """config.ks without the cut-offs beyond `database_size`, in their order:
  those cannot be scored, and a default such as (100, 1000, 5000) must fit
  a corpus of 2,000 items. ConfigError when none is left."""
  ks = tuple(int(k) for k in config.ks)
  kept = tuple(k for k in ks if k <= database_size)
  if not kept:
    raise ConfigError(f"config.ks={ks!r}: no cut-off is at most the database size "
                      f"({database_size} items); give one, e.g. "
                      f"--config.ks='({min(10, database_size)},)'")
  return kept


def check_against_data(config, dataset):
  """What can only be checked once the data is loaded, before compiling."""
  database_size = dataset.database_size
  if (config.optimizer == "fast"
      and not sparse.use_sparse_input(config.model.sparse_input, dataset)):
    raise ConfigError(f"config.optimizer='fast' needs the sparse input path, and "
                      f"model.sparse_input={config.model.sparse_input!r} resolves "
                      f"to dense for {dataset.name} (set it to 'sparse', or use "
                      "optimizer='exact')")
  usable_ks(config, database_size)  # the cut-offs beyond it are dropped, not an error
  if config.batch_size > database_size:
    raise ConfigError(f"config.batch_size={config.batch_size}: at most the training "
                      f"set size ({database_size} items)")
