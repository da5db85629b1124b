"""The method registry: what a method declares, and how it is looked up.

A method declares
- its traced weights by name, with defaults: one value per run, so a sweep
  over levels and weights is one compiled program (`hp[name]` in the
  objective; set per level from the config as
  `--config.weights.<method>.<name>='(0.1,1.0)'`);
- its static options by name, with defaults (and, optionally, the allowed
  values: a tuple, or AtLeast(low) for a number): `options.<name>` in the
  objective, set as `--config.loss.<name>=...`;
- its network: a function of a models.ModelSpec returning a linen module
  (models.ModelSpec says what the module must provide). The study's
  HashModel is the default, with the method's `latent` and `classifier_on`;
- its objective, a pure function
      objective(out, batch, hp, options) -> (loss, {term: scalar})
  of the network's outputs `out`, the batch (targets: dense [batch, dims]
  or a sparse.SparseRows, which losses.softmax_reconstruction and
  losses.gaussian_reconstruction both take; label_rows [batch, classes],
  zero for unlabelled items; labelled [batch] in {0, 1}), the weights and
  the options. The terms are logged per epoch;
- optionally, the method it extends (`extends="ssb_vae"`): a method that is
  its base plus a term (PL-Hash, IM-Hash and CV-Hash extend SSB-VAE). It
  shares with its base the weights both declare, and where a config takes
  the base's weights from a released or tuned source (configs/base.py), the
  method gets the base's values for those and its own defaults for the rest
  (`shared_weights`). The base must be registered first; no cycles;
- optionally, that it learns from document neighbours
  (`neighbours=Neighbours(k=20)`): the sweep then computes each training
  item's k most similar training items once (data.neighbours, cached) and
  the run's arrays gain `neighbours` [items, k] int32. At every step each
  batch item gets one of its k neighbours, drawn uniformly with a key of
  its own, and the batch gains `neighbour` [batch] (the drawn items'
  positions in the training arrays), `neighbour_rank` [batch] (the drawn
  column of the table, which is ordered by decreasing similarity: 0 = most
  similar) and `neighbour_targets` (their targets, in the form `targets`
  has). With `Neighbours(draws=d)`, d > 1, each item gets d distinct
  neighbours among its k, in ascending table order (so the first is the
  more similar one; RBSH's triplets), and `neighbour` and `neighbour_rank`
  are [batch, d] (no `neighbour_targets`). With `Neighbours(encode=True)`
  the network is also applied to the drawn neighbours' inputs: it runs once
  on the batch and its neighbours stacked ([(1 + d) batch] rows, so batch
  norm's statistics are those of all the rows and are updated once), and
  `out` holds the batch's rows with `out["neighbour"]` the same outputs for
  the neighbours ([batch, ...]; [d, batch, ...] when d > 1). Methods
  without the declaration get none of this: their arrays, batches and
  compiled programs are unchanged.
- optionally, a part of its network with an update of its own
  (`own_update=OwnUpdate(part="prior", objective=..., steps=4)`), for an
  adversarial or inner problem such as AMMI's prior. The part is a
  top-level entry of the network's parameters, params[part]; the method's
  objective never trains it, and the part's own objective
      objective(part_params, out, batch, hp, options) -> (loss, {term: scalar})
  trains nothing else. At every step, after the network's pass on the
  batch, the part takes `steps` Adam steps on its objective (on the same
  batch, `out` held fixed), with its own Adam state (carried and
  checkpointed with the run's state; `reset_moments=True` starts it
  afresh each step) at the trainer's learning rate or a declared weight's
  (`learning_rate="name"`); then the method's objective gets
  `out[part]`, the part's updated parameters (held fixed), and its
  gradient and the trainer's optimiser cover the rest of the network only.
  The part's terms are logged as `<part>_<term>`. Methods without the
  declaration get none of this: their parameters, optimiser state and
  compiled programs are unchanged.

Register from any module, the package's or a user's (`--config.extra_modules`):

    @methods.register("my_method", weights=dict(beta=0.1, delta=1.0),
                      options=dict(word_drop=0.1), latent="bernoulli")
    def my_method(out, batch, hp, options): ...
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Any, Callable, Mapping, Optional

from hashvae.core.models import HashModel, ModelSpec

Objective = Callable[..., tuple]
TRAINER_WEIGHTS = ("learning_rate", "temperature")  # traced per run, not a method's


class MethodError(ValueError):
  """A method's declaration, or a weight or option it reads, is wrong."""


class Options(Mapping):
  """A method's static options (hashable, so it can close over a program).

  Read as attributes (`options.pair_reduction`) or items. `multilabel_data`
  (whether label rows may hold several ones) comes from the dataset.
  """

  def __init__(self, method: str, values: Mapping[str, Any], multilabel_data=False):
    self._method = method
    self._items = tuple(sorted(values.items()))
    self.multilabel_data = bool(multilabel_data)

  def __getitem__(self, name):
    for key, value in self._items:
      if key == name:
        return value
    raise MethodError(f"method {self._method!r} reads option {name!r}, which it does "
                      f"not declare; declared: {[k for k, _ in self._items]}")

  def __getattr__(self, name):
    if name.startswith("_"):
      raise AttributeError(name)
    return self[name]

  def __iter__(self):
    return (k for k, _ in self._items)

  def __len__(self):
    return len(self._items)

  def __hash__(self):
    return hash((self._method, self._items, self.multilabel_data))

  def __eq__(self, other):
    return isinstance(other, Options) and hash(self) == hash(other)

  def __repr__(self):
    return f"Options({self._method!r}, {dict(self._items)}, multilabel_data={self.multilabel_data})"


class Weights(dict):
  """A run's traced weights; reading one the method did not declare fails
  naming the method and its weights (instead of a bare KeyError mid-trace)."""

  def __init__(self, method: str, values):
    super().__init__(values)
    self.method = method

  def __missing__(self, name):
    declared = [k for k in self if k not in TRAINER_WEIGHTS]
    raise MethodError(f"method {self.method!r} reads weight {name!r}, which it does "
                      f"not declare; declared: {declared} (add it to "
                      "register(..., weights=...))")


def study_model(latent: str, classifier_on: str):
  """The study's network (HashModel) with this latent and classifier input."""
  return lambda spec: HashModel(**dataclasses.asdict(spec), latent=latent,
                                classifier_on=classifier_on)


@dataclasses.dataclass(frozen=True)
class AtLeast:
  """An option's allowed values when they are numbers: finite, >= low (for
  `choices`, beside a tuple of the allowed values)."""

  low: float

  def __contains__(self, value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= self.low)

  def __str__(self) -> str:
    return f"a finite number >= {self.low:g}"


def describe(allowed) -> str:
  """An option's allowed values, for an error message."""
  return str(allowed) if isinstance(allowed, AtLeast) else f"one of {allowed}"


@dataclasses.dataclass(frozen=True)
class Neighbours:
  """A method's declaration that it learns from document neighbours (see the
  module docstring).

  Attributes:
    k: neighbours per training item; each step draws one of them.
    similarity: the similarity of text with term counts ('bm25' or
      'tfidf' on the counts); dense features always take 'cosine', and
      bag-of-words inputs without term counts 'tfidf' on the inputs
      (sweep.specs.neighbour_features says how the sweep picks).
    encode: whether the network is also applied to the drawn neighbours'
      inputs (`out["neighbour"]`).
    draws: distinct neighbours drawn per item and step, in [1, k].
  """

  k: int = 10
  similarity: str = "bm25"
  encode: bool = False
  draws: int = 1

  def __post_init__(self):
    if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
      raise MethodError(f"Neighbours(k={self.k!r}): k must be an integer >= 1")
    if (not isinstance(self.draws, int) or isinstance(self.draws, bool)
        or not 1 <= self.draws <= self.k):
      raise MethodError(f"Neighbours(draws={self.draws!r}): an integer in [1, k={self.k}]")
    if self.similarity not in ("bm25", "tfidf", "cosine"):
      raise MethodError(f"Neighbours(similarity={self.similarity!r}): one of 'bm25', "
                        "'tfidf', 'cosine'")


@dataclasses.dataclass(frozen=True)
class OwnUpdate:
  """A method's declaration that a part of its network is trained by an
  objective of its own, not the method's (see the module docstring).

  Attributes:
    part: the part's name, a top-level entry of the network's params.
    objective: (part_params, out, batch, hp, options) -> (loss, {term:
      scalar}), minimised over the part's parameters; `out` is the
      network's outputs on the step's batch, held fixed.
    steps: the part's Adam steps per step of the rest of the network,
      taken before it.
    learning_rate: the name of a declared weight holding the part's
      learning rate; None: the trainer's learning_rate.
    reset_moments: whether the part's Adam restarts (zero moments and step
      count) at every step of the rest, as an optimiser built anew for each
      step does.
  """

  part: str
  objective: Callable[..., tuple]
  steps: int = 1
  learning_rate: Optional[str] = None
  reset_moments: bool = False

  def __post_init__(self):
    if not isinstance(self.part, str) or not self.part:
      raise MethodError(f"OwnUpdate(part={self.part!r}): part must be a non-empty "
                        "name of an entry of the network's params")
    if not callable(self.objective):
      raise MethodError(f"OwnUpdate(objective={self.objective!r}): not callable")
    if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
      raise MethodError(f"OwnUpdate(steps={self.steps!r}): steps must be an integer >= 1")


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  objective: Objective
  weights: Mapping[str, float]  # traced per run; name -> default
  options: Mapping[str, Any]  # static; name -> default
  choices: Mapping[str, Any]  # option name -> allowed values (a tuple or AtLeast)
  model: Optional[Callable[[ModelSpec], Any]]  # ModelSpec -> linen module
  doc: str = ""
  # A method that is not trained by gradient (the classical baselines):
  # fit(dataset, labelled [items] float32, rng, hp {name: float}, options,
  # bits) -> (db_codes [items, bits], query_codes [queries, bits]) uint8.
  fit: Optional[Callable] = None
  extends: Optional[str] = None  # the registered method this one is built on
  neighbours: Optional[Neighbours] = None  # set when it learns from neighbours
  own_update: Optional[OwnUpdate] = None  # a part trained by its own objective

  def build_model(self, spec: ModelSpec):
    return self.model(spec)


METHODS: dict[str, Method] = {}


def register(name: str, *, weights: Mapping[str, float],
             options: Optional[Mapping[str, Any]] = None,
             choices: Optional[Mapping[str, tuple]] = None,
             model: Optional[Callable[[ModelSpec], Any]] = None,
             latent: str = "bernoulli", classifier_on: str = "hidden",
             extends: Optional[str] = None, neighbours: Optional[Neighbours] = None,
             own_update: Optional[OwnUpdate] = None):
  """Decorator: registers `objective` under `name` and returns it unchanged.

  `model` builds the network from a ModelSpec; without it the study's
  HashModel with `latent` ("gaussian" or "bernoulli") and `classifier_on`
  ("hidden" or "sample") is used. `extends` names the registered method
  this one is built on, `neighbours` what it reads of document neighbours,
  `own_update` a part of its network trained by its own objective (see the
  module docstring).
  """
  check_extends(name, extends)
  if neighbours is not None and not isinstance(neighbours, Neighbours):
    raise MethodError(f"method {name!r}: neighbours must be a Neighbours(...), got "
                      f"{neighbours!r}")
  check_own_update(name, own_update, weights)
  options, choices = dict(options or {}), dict(choices or {})
  clash = set(weights) & set(TRAINER_WEIGHTS)
  if clash or "levels" in weights:
    raise MethodError(f"method {name!r}: weight names {sorted(clash) or ['levels']} "
                      "are reserved")
  for key, allowed in choices.items():
    if key not in options or options[key] not in allowed:
      raise MethodError(f"method {name!r}: choices for {key!r} need a declared "
                        f"option whose default is {describe(allowed)}")
  if model is None:
    if latent not in ("gaussian", "bernoulli"):
      raise MethodError(f"latent must be 'gaussian' or 'bernoulli', got {latent!r}")
    if classifier_on not in ("hidden", "sample"):
      raise MethodError(f"classifier_on must be 'hidden' or 'sample', got "
                        f"{classifier_on!r}")
    model = study_model(latent, classifier_on)

  def decorate(objective: Objective) -> Objective:
    METHODS[name] = Method(name, objective, {k: float(v) for k, v in weights.items()},
                           options, choices, model, (objective.__doc__ or "").strip(),
                           extends=extends, neighbours=neighbours,
                           own_update=own_update)
    return objective

  return decorate


def check_own_update(name: str, own_update, weights: Mapping[str, float]):
  """`own_update` is None or an OwnUpdate whose learning rate, if named, is
  one of the method's weights."""
  if own_update is None:
    return
  if not isinstance(own_update, OwnUpdate):
    raise MethodError(f"method {name!r}: own_update must be an OwnUpdate(...), got "
                      f"{own_update!r}")
  if own_update.learning_rate is not None and own_update.learning_rate not in weights:
    raise MethodError(f"method {name!r}: OwnUpdate(learning_rate="
                      f"{own_update.learning_rate!r}) names no declared weight; declared: "
                      f"{sorted(weights)}")


def check_extends(name: str, extends: Optional[str]):
  """`extends` is None or a registered method whose own chain of bases does
  not lead back to `name`."""
  if extends is None:
    return
  if extends not in METHODS:
    raise MethodError(f"method {name!r}: extends={extends!r}, which is not registered "
                      f"(register the base first); known: {sorted(METHODS)}")
  chain = [name, extends]
  while chain[-1] != name:
    base = METHODS.get(chain[-1])
    if base is None or base.extends is None or base.extends in chain[1:]:
      return
    chain.append(base.extends)
  raise MethodError(f"method {name!r}: extends={extends!r} makes a cycle "
                    f"({' -> '.join(chain)})")


def shared_weights(name: str) -> tuple:
  """The weights method `name` shares with the method it extends: the names
  both declare, in `name`'s order (none when it extends no method)."""
  m = get(name)
  if m.extends is None:
    return ()
  base = get(m.extends)
  return tuple(k for k in m.weights if k in base.weights)


def default_options(method: str, multilabel_data: bool = False, **values) -> Options:
  """A method's options: its declared defaults, with `values` replacing some
  (for calling an objective directly)."""
  m = get(method)
  unknown = sorted(set(values) - set(m.options))
  if unknown:
    raise MethodError(f"method {method!r} has no options {unknown}; declared: "
                      f"{sorted(m.options)}")
  return Options(m.name, dict(m.options, **values), multilabel_data)


def register_fitted(name: str, *, weights: Mapping[str, float],
                    options: Optional[Mapping[str, Any]] = None,
                    choices: Optional[Mapping[str, tuple]] = None):
  """Decorator: registers a method that is fitted, not trained by gradient:
  fit(dataset, labelled, rng, hp, options, bits) -> (db_codes, query_codes).

  `labelled` [items] marks the database items (train then validation) whose
  label the run may use, the same mask a trained method of the sweep draws;
  `rng` is a numpy Generator seeded from the run's key; `hp` holds the
  run's weights as floats. Its sweep runs on the host, one run at a time.
  """
  def decorate(fit: Callable) -> Callable:
    METHODS[name] = Method(name, None, {k: float(v) for k, v in weights.items()},
                           dict(options or {}), dict(choices or {}), None,
                           (fit.__doc__ or "").strip(), fit)
    return fit

  return decorate


def get(name: str) -> Method:
  if name not in METHODS:
    raise MethodError(f"unknown method {name!r}; known: {sorted(METHODS)}")
  return METHODS[name]


def import_modules(names: str):
  """Imports the comma-separated modules `names` (config.extra_modules), whose
  import registers their methods."""
  for name in filter(None, (n.strip() for n in names.split(","))):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise MethodError(f"config.extra_modules: cannot import {name!r}: {e}") from e
