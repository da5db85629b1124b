"""What a weight search tries and how it chooses (host side, no training).

A search draws candidate weight settings per method (log-uniform draws or a
log-spaced grid over each searched weight's range; the weights not searched
keep config.weights), trains every candidate x seed x level as one grid and
scores each run on the validation split. `search_dataset` is the only view
of the data a search gets: the training split is the database, the
validation items are the queries, and the test split is not in it at all.
Selection per (method, level) is on the mean over seeds of one metric.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib

import numpy as np

from hashvae import methods
from hashvae.data.dataset import Dataset
from hashvae.sweep import config_check
from hashvae.sweep.config_check import ConfigError
from hashvae.training.grid import Grid
from hashvae.tuning.metric_choice import AUTO, METRIC

# A method's declared default d gives the range d / SPAN .. d * SPAN when
# config.tune.ranges has none for it (a method registered after the config).
SPAN = 1e3
KINDS = ("random", "latin", "grid")


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One weight setting of a method: a value per searched level for each of
  its weights. A config setting (config.weights at one or more searched
  levels) is tried at every level; a drawn one is the same at every level
  too, its pinned weights following the config's per level."""

  index: int
  source: str  # "config" (config.weights of some searched level) or "draw"
  values: dict  # weight -> tuple, one per level of the search
  own_levels: tuple = ()  # the searched levels whose config.weights this is


def levels(config) -> tuple:
  """The labelled fractions searched: config.tune.levels, else config.levels."""
  return tuple(config.tune.levels) or tuple(config.levels)


def candidate_levels(config) -> tuple:
  """The levels whose config.weights are candidates: config.tune.candidate_levels,
  else the searched levels."""
  return tuple(config.tune.candidate_levels) or levels(config)


def search_config(config, at_levels: tuple = ()):
  """`config` with the search's seeds and levels (or `at_levels`): the grid
  of a search is built from it (config.weights then gives the pinned weights
  per level)."""
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.seeds = tuple(config.tune.seeds)
    c.levels = tuple(at_levels) or levels(config)
  return c


def metric_name(config) -> str:
  """config.tune.metric as given: "auto" until metric_choice.choose_metric
  resolves it for the search's data."""
  return config.tune.metric


def searched(config, method: methods.Method) -> tuple:
  """The method's weights the search varies: those named in config.tune.search
  that it declares (all it declares when the field is empty)."""
  names = [n.strip() for n in config.tune.search.split(",") if n.strip()]
  if not names:
    return tuple(method.weights)
  return tuple(n for n in method.weights if n in names)


def ranges(config, method: methods.Method) -> dict:
  """{weight: (low, high)} of each searched weight: config.tune.ranges where
  given, else the method's declared default / SPAN .. * SPAN."""
  given = config.tune.ranges[method.name] if method.name in config.tune.ranges else {}
  out = {}
  for name in searched(config, method):
    if name in given:
      low, high = (float(v) for v in given[name])
    else:
      default = method.weights[name]
      low, high = default / SPAN, default * SPAN
    out[name] = (low, high)
  return out


def check(config):
  """The tune block's values, before any data is loaded (ConfigError names
  the field). config_check.check covers the rest of the config."""
  t = config.tune

  def need(ok, field, allowed, value):
    if not ok:
      raise ConfigError(f"config.tune.{field}={value!r}: {allowed}")

  need(t.kind in KINDS, "kind", f"one of {KINDS}", t.kind)
  need(isinstance(t.candidates, int) and t.candidates >= 1, "candidates",
       "an integer >= 1", t.candidates)
  need(len(t.seeds) > 0, "seeds", "at least one seed", tuple(t.seeds))
  need(all(0.0 <= lv <= 1.0 for lv in levels(config)), "levels",
       "fractions in [0, 1]", tuple(t.levels))
  need(all(0.0 <= lv <= 1.0 for lv in t.candidate_levels), "candidate_levels",
       "fractions in [0, 1]", tuple(t.candidate_levels))
  match = re.fullmatch(METRIC, t.metric)
  need(t.metric == AUTO or (match is not None and int(match.group(2)) in tuple(config.ks)),
       "metric", f"'{AUTO}', or p@K, r@K, map@K, ndcg@K or p@K_tie_aware with K in "
       f"config.ks {tuple(config.ks)}", t.metric)
  need(isinstance(t.halving_rounds, int) and t.halving_rounds >= 0, "halving_rounds",
       "an integer >= 0 (0: no halving)", t.halving_rounds)
  need(isinstance(t.halving_eta, int) and t.halving_eta >= 2, "halving_eta",
       "an integer >= 2 (each round keeps 1/eta)", t.halving_eta)
  need(isinstance(t.halving_first_fraction, (int, float)) and 0 <= t.halving_first_fraction
       <= 1, "halving_first_fraction", "a fraction of config.epochs in [0, 1]",
       t.halving_first_fraction)
  need(not t.audit_halving or t.halving_rounds >= 1, "audit_halving",
       "needs tune.halving_rounds >= 1 (the rounds to audit)", t.audit_halving)
  need(0.0 < t.validation_fraction < 1.0, "validation_fraction", "a fraction in (0, 1)",
       t.validation_fraction)
  names = {n.strip() for n in t.search.split(",") if n.strip()}
  declared = {w for m in config.methods if m in methods.METHODS
              for w in methods.get(m).weights}
  need(names <= declared, "search", f"weights of the methods {tuple(config.methods)}: "
       f"{sorted(declared)}", t.search)
  for name in t.ranges:
    if name not in methods.METHODS:
      raise ConfigError(f"config.tune.ranges.{name}: no method {name!r} is registered")
    for weight, bounds in t.ranges[name].items():
      where = f"ranges.{name}.{weight}"
      need(weight in methods.get(name).weights, where,
           f"not a weight of {name!r}: {sorted(methods.get(name).weights)}", bounds)
      numbers = len(bounds) == 2 and all(
          isinstance(v, (int, float)) and math.isfinite(v) for v in bounds)
      need(numbers and 0 < bounds[0] <= bounds[1], where,
           "(low, high) with 0 < low <= high (log-uniform)", tuple(bounds))
  for m in map(methods.get, config.methods):
    space = ranges(config, m)
    if t.kind == "grid" and space:
      points = grid_points(t.candidates, len(space))
      need(points ** len(space) == t.candidates, "candidates",
           f"a grid over {len(space)} weights {sorted(space)} of {m.name!r} needs "
           f"k**{len(space)} candidates (e.g. {points ** len(space)} or "
           f"{(points + 1) ** len(space)})", t.candidates)
    for weight, (low, _) in space.items():
      need(low > 0, f"ranges.{m.name}.{weight}",
           "a range with low > 0 (the declared default is 0: give one)", (low, _))


def grid_points(count: int, weights: int) -> int:
  """Points per weight of a grid of about `count` settings."""
  return max(1, int(math.floor(count ** (1.0 / weights) + 1e-9)))


def method_seed(seed: int, method: str) -> np.random.SeedSequence:
  """Each method its own stream, the same in every search with this seed."""
  return np.random.SeedSequence([int(seed), zlib.crc32(method.encode())])


def draw(space: dict, count: int, kind: str, seed) -> list[dict]:
  """`count` settings {weight: value} over `space` {weight: (low, high)}:
  "random" draws each weight log-uniformly in its range; "latin" does too,
  but splits each weight's log-range into `count` equal strata and puts one
  draw in each (a Latin hypercube: a few draws still cover every decade of
  every weight); "grid" takes the product of log-spaced points, endpoints
  included (count = k**weights)."""
  names = list(space)
  if not names:
    return [{}]  # nothing to vary: one candidate, the pinned weights
  low = np.log([space[n][0] for n in names])
  high = np.log([space[n][1] for n in names])
  if kind in ("random", "latin"):
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(count, len(names)))
    if kind == "latin":  # column j: stratum perm_j[i] for draw i
      strata = np.stack([rng.permutation(count) for _ in names], axis=1)
      u = (strata + u) / count
    values = np.exp(low + u * (high - low))
  else:
    k = grid_points(count, len(names))
    axes = [np.exp(np.linspace(lo, hi, k)) for lo, hi in zip(low, high, strict=True)]
    values = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(names))
  return [{n: float(v) for n, v in zip(names, row, strict=True)} for row in values]


def config_settings(table: dict, names: tuple, lv: tuple) -> list[tuple[dict, tuple]]:
  """The distinct settings of the weights `names` in a per-level weight
  table {weight: value per level of `lv`}, in level order, each with the
  levels that give it."""
  at = {}
  for i, level in enumerate(lv):
    key = tuple(table[k][i] for k in names)
    at[key] = at.get(key, ()) + (level,)
  return [(dict(zip(names, key, strict=True)), levels_) for key, levels_ in at.items()]


def candidates(config, method: str) -> list[Candidate]:
  """The method's candidates. With tune.include_config, the config's own
  weights come first: each distinct setting config.weights gives a level of
  tune.candidate_levels (default: the searched levels) is tried at every
  searched level (weights that suit level 0.1 may suit 0.2 better than
  0.2's own), and the draws fill a budget of
  1 + tune.candidates settings (a grid keeps all its points; more distinct
  config settings than the budget are all kept, with no draws). Weights not
  searched keep config.weights at each level, in every candidate; a method
  with none searched has the config's candidate alone. The candidates do not
  depend on which of candidate_levels are searched, so a search split by
  level over several jobs, each naming the same candidate_levels, tries at
  each level what one search of them all would."""
  m = methods.get(method)
  lv, space = levels(config), ranges(config, m)
  table = config_check.weight_table(search_config(config), m)

  def candidate(source, values, own_levels=()):
    full = {k: (values[k],) * len(lv) if k in values else tuple(table[k]) for k in m.weights}
    return Candidate(len(out), source, full, own_levels)

  out = []
  if config.tune.include_config:
    own = candidate_levels(config)
    rows = config_check.weight_table(search_config(config, own), m)
    for setting, at in config_settings(rows, tuple(space), own):
      out.append(candidate("config", setting, at))
  count = config.tune.candidates
  if config.tune.kind != "grid":
    count = max(count - max(len(out) - 1, 0), 0)
  if space or not out:  # with nothing to vary, the config's candidate is the one
    for values in draw(space, count, config.tune.kind, method_seed(config.tune.seed, method)):
      out.append(candidate("draw", values))
  return out


def search_grid(config, method: str, cands: list[Candidate]) -> tuple[Grid, np.ndarray]:
  """(grid, [runs] candidate index): every candidate x level x seed, in
  that order (candidate-major), with the trainer's weights of the config."""
  lv, seeds = levels(config), tuple(config.tune.seeds)
  cells = [(c, i, s) for c in cands for i in range(len(lv)) for s in seeds]
  hp = {k: [c.values[k][i] for c, i, _ in cells] for k in cands[0].values}
  hp.update(learning_rate=[config.learning_rate] * len(cells),
            temperature=[config.temperature] * len(cells))
  grid = Grid(method=method, seeds=np.array([s for _, _, s in cells], np.int64),
              levels=np.array([lv[i] for _, i, _ in cells], np.float64),
              hparams={k: np.array(v, np.float64) for k, v in hp.items()})
  return grid, np.array([c.index for c, _, _ in cells], np.int64)


def search_dataset(dataset: Dataset, tune) -> Dataset:
  """The data a search sees: train = the training split (the database),
  no validation, test = the validation split (the queries). A dataset
  without a validation split (digits, features) holds out
  tune.validation_fraction of its training split, drawn with tune.seed.
  The test split is not part of the result."""
  train, validation = dataset.train, dataset.validation
  if len(validation) == 0:
    order = np.random.default_rng(int(tune.seed)).permutation(len(train))
    held = max(1, int(round(tune.validation_fraction * len(train))))
    validation = train.take(np.sort(order[:held]))
    train = train.take(np.sort(order[held:]))
  return Dataset(name=dataset.name, train=train, validation=train.take(np.arange(0)),
                 test=validation, num_classes=dataset.num_classes,
                 class_names=dataset.class_names, vectoriser=dataset.vectoriser)


def weight_rows(dataset: str, bits: int, method: str, chosen: dict) -> list[dict]:
  """weights.csv rows (released_hyperparameters.csv's columns, one per
  weight) of one method: `chosen` {level: {weight: value}}."""
  return [dict(dataset=dataset, bits=bits, method=method, p=level, **values)
          for level, values in sorted(chosen.items())]


@dataclasses.dataclass(frozen=True)
class Search:
  """A finished search: one record per run, the choice per (method, level)."""

  records: list  # dicts: method, level, seed, candidate, weights, epochs, status, val_*
  chosen: dict  # method -> {level: candidate index}
  candidates: dict  # method -> [Candidate]
  cost: dict  # method -> {"run_epochs", "full_run_epochs", "seconds", "rungs"}
  metric: str = ""  # the validation metric chosen on (tune.metric, resolved)
