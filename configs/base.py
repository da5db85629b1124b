"""Fields every experiment shares; dataset configs import and adjust them.

A dataset config file defines `get_config(arg)` where `arg` is the text after
the colon of `--config=configs/x.py:method=ssb_vae,bits=32`.
"""

import csv
import difflib
import os

import ml_collections

from hashvae import methods as registry

STUDY_METHODS = ("vdsh_s", "phs_gs", "ssb_vae")


def parse_arg(arg, **defaults):
  """'method=ssb_vae,bits=32' -> dict, typed like `defaults`; unknown keys fail.

  `method` also accepts `all` (the defaults' methods) or `a+b` for several.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, text = item.partition("=")
    if not sep or key not in defaults:
      raise ValueError(f"config argument {item!r}: expected key=value with key "
                       f"in {sorted(defaults)}")
    values[key] = type(defaults[key])(text) if key != "method" else text
  return values


def method_tuple(text, all_methods):
  """The argument's `method=`: `all` (`all_methods`) or names joined by `+`,
  each registered (a misspelt name is a command-line mistake: it fails
  here, naming the nearest registered name)."""
  names = tuple(all_methods) if text == "all" else tuple(text.split("+"))
  for name in names:
    if name not in registry.METHODS:
      close = difflib.get_close_matches(name, sorted(registry.METHODS), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise ValueError(f"config argument method={text}: unknown method {name!r}{hint}; "
                       f"known: {sorted(registry.METHODS)}")
  return names


def weights(levels=(), **values):
  """A method's weights block: each weight one value for every level, or one
  per entry of `levels` (then a sweep over any subset of those levels finds
  its own), or, with `levels` empty, one per level of config.levels in order.
  Weights left out take the method's declared defaults."""
  return ml_collections.ConfigDict(dict({k: tuple(v) for k, v in values.items()},
                                        levels=tuple(levels)))


def declared(method_names):
  """(weights blocks, options) the registered methods among `method_names`
  declare, with their defaults: the config fields that can be overridden.
  A method registered later (config.extra_modules) falls back to its
  declared defaults, and its fields can be set from Python."""
  blocks, options = {}, {}
  for name in method_names:
    if name in registry.METHODS:
      m = registry.get(name)
      blocks[name] = weights(**{k: (v,) for k, v in m.weights.items()})
      for k, v in m.options.items():
        options.setdefault(k, v)
  return blocks, options


def base_config(methods, bits) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.methods = methods  # registered objectives to train, one program each
  c.bits = bits  # code length K
  c.seeds = (0, 1, 2)  # run key = fold_in(key(base_seed), seed)
  c.base_seed = 0  # the key every run's key is folded from
  c.levels = (0.1, 0.5, 1.0)  # labelled fractions p in [0, 1]
  blocks, options = declared(methods)
  # Per method, its declared weights for each level (or one value for all);
  # see `weights`. Set with --config.weights.<method>.<name>='(0.1,1.0)'.
  c.weights = ml_collections.ConfigDict(blocks)
  # Comma-separated modules imported before the config is checked, e.g. one
  # that registers a method with hashvae.methods.register.
  c.extra_modules = ""
  c.learning_rate = 1e-3  # Adam, as released
  # "exact": Adam updates every weight at every step (as released). "fast":
  # lazy Adam on the first kernel: only the rows of the features present in
  # the batch, and their moments, are updated (bias correction from the global
  # step count); not the released optimiser; needs the sparse input path.
  c.optimizer = "exact"
  c.temperature = 0.67  # binary-concrete relaxation temperature
  c.epochs = 30  # passes over the training items
  c.batch_size = 100  # training items per step
  c.eval_batch_size = 1000  # items encoded at once at evaluation
  # Retrieval cut-offs K of p@K, r@K, map@K, ndcg@K; those beyond the
  # database size are dropped, with a warning (a corpus of 2,000 items is
  # scored at 100 and 1000).
  c.ks = (100, 1000, 5000)
  # Rankings that order the database by the query's real-valued code scores
  # (hashvae/retrieval/rerank.py), each adding a p@K_<ranking> column per K
  # beside the Hamming ranking's metrics, which stay the reported ones:
  # "tie_break" (Hamming distance, then the query's confidence in the
  # differing bits) and "asymmetric" (that weighted distance alone).
  # Trained methods only; a host-fitted one's columns are empty.
  c.extra_rankings = ()
  # Label mask: False draws floor(p * N) over train + validation together;
  # True draws floor(p * N_s) in each split separately, as released.
  c.mask_per_split = False
  # Set to reuse one mask for every seed (the released protocol used 20);
  # unset, each (seed, level) run draws its own mask from its key.
  c.shared_mask_seed = ml_collections.config_dict.placeholder(int)
  c.devices = 0  # devices the run axis is split over (0: every visible one)
  # Train state (parameters, Adam moments, ...) one device may hold; a grid
  # whose stacked state is larger runs as consecutive chunks of runs.
  # 0: from the device. A GPU or TPU that reports its memory
  # (Device.memory_stats) gets DEVICE_MEMORY_FRACTION of it; a CPU device,
  # which reports none, gets CPU_BUDGET_MB (hashvae/training/chunking.py;
  # docs/performance.md, "Memory"). Either way the data each device holds
  # is taken off.
  c.state_memory_budget_mb = 0.0
  # Matrix products of float32 inputs (jax.default_matmul_precision):
  # "float32" computes in full float32 on every platform, what the CPU
  # computes; "tensorfloat32" (TF32 on NVIDIA tensor cores, 3-pass bfloat16
  # on TPU) and "bfloat16" (one bfloat16 pass on TPU) are faster on
  # accelerators and change the codes there; "default" leaves the choice to
  # jax and the platform. On a CPU all four compute the same.
  c.precision = "float32"
  # On CPU devices, at most this many runs a device in one chunk (0: no
  # cap). Narrower programs are faster per run on a CPU host, whose caches
  # the wider program's per-step arrays and state outgrow (measured in
  # docs/performance.md, "Memory"). Accelerators
  # keep wide programs.
  c.cpu_runs_per_chunk = 5
  c.checkpoint_every = 5  # epochs between checkpoints (also at the end)
  c.checkpoints_to_keep = 2  # the latest ones, per method
  c.model = ml_collections.ConfigDict()
  c.model.hidden = (500, 500)  # encoder widths
  c.model.batch_norm = True  # after each encoder layer
  # How the encoder reads its input: "sparse" = padded lists of each row's
  # nonzero (column, value) pairs, the first layer a gather of kernel rows
  # (same parameters, same results up to float rounding, much faster for
  # bag-of-words); "dense" = the full rows; "auto" = sparse when no row has
  # more nonzeros than 10% of the input width.
  c.model.sparse_input = "auto"
  # The methods' static options, with their declared defaults (paper parity
  # for the study's methods: hashvae/methods/blocks.py says what each does).
  c.loss = ml_collections.ConfigDict(options)
  c.data = ml_collections.ConfigDict()
  c.tune = tune_block(methods)
  return c


def tune_block(method_names) -> ml_collections.ConfigDict:
  """The weight search of `python -m launch.tune` (hashvae/tuning/tune.py): read
  only there; a sweep ignores it."""
  t = ml_collections.ConfigDict()
  # "latin": log-uniform draws, stratified so that each weight gets one draw
  # in each 1/candidates of its log-range (a few candidates still cover
  # every decade); "random": plain log-uniform draws; "grid": log-spaced
  # points.
  t.kind = "latin"
  t.candidates = 16  # settings drawn per method (a grid needs k**weights)
  t.seed = 0  # draws the candidates (and holds out validation where none exists)
  t.seeds = (0, 1)  # training seeds per candidate; selection on their mean
  t.levels = ()  # labelled fractions searched (empty: config.levels)
  # Levels whose config.weights are candidates at every searched level
  # (empty: the searched levels). Name all of a study's levels here to split
  # its search by level over several jobs: each job then tries the same
  # candidates at its levels as one search of them all.
  t.candidate_levels = ()
  # Validation metric maximised: "auto" is p@K with K at most half the mean
  # number of database items relevant to a validation query, rounded down to
  # 1, 2 or 5 x 10^n, and at most 100 (p@100 on the study's corpora, p@50 on
  # 2,000 documents in 10 classes), added to the search's ks. Or name one:
  # p@K, r@K, map@K, ndcg@K, p@K_tie_aware with K in config.ks.
  t.metric = "auto"
  # Comma-separated weights searched (empty: every declared weight); the
  # others keep config.weights at each level.
  t.search = ""
  # Log-uniform range per method and weight; default: the declared value
  # / 1e3 .. * 1e3. --config.tune.ranges.ssb_vae.alpha='(1e-4,1e4)'.
  t.ranges = ml_collections.ConfigDict(
      {m: {k: (v / 1e3, v * 1e3) for k, v in registry.get(m).weights.items()}
       for m in method_names if m in registry.METHODS})
  # Also try config.weights: each level's setting at every searched level,
  # first among the 1 + candidates settings.
  t.include_config = True
  # Successive halving: rounds of shorter training before the full epochs,
  # each keeping the best 1/halving_eta of the candidates per level and
  # continuing them from their state (0: every candidate trains in full).
  t.halving_rounds = 0
  t.halving_eta = 3
  # No cut before this fraction of config.epochs: rounds at epochs / eta**k
  # that come earlier are merged into the first round at the floor.
  # 0.5: measured on three ~2,000-document corpora (docs/tuning.md, "When
  # to make the first cut"), the earliest cut that kept every choice full
  # training made (within 0.002 validation p@100); at a third of the epochs
  # a synthetic corpus lost 0.04. With it, any rounds and eta give one cut,
  # at half the epochs.
  t.halving_first_fraction = 0.5
  # The config's own weights pass every cut (trained in full, so that the
  # choice is compared with them at the end): the released rows with a
  # small supervised weight start slowly and look like chance at any cut.
  t.halving_keep_config = True
  # Train every candidate through every round without the cut, and write
  # halving_audit.csv: per level, whether halving with 1..halving_rounds
  # rounds keeps the candidate full training chooses (full training's cost),
  # and halving_spread.csv: how well each round's ranking foretells the end.
  t.audit_halving = False
  # Of the training split, held out as validation queries when the data
  # has no validation split (digits, image features).
  t.validation_fraction = 0.2
  t.dataset_name = ""  # weights.csv's dataset column (empty: data.name)
  return t


RELEASED_CSV = os.path.join(os.path.dirname(__file__),
                            "released_hyperparameters.csv")
RELEASED_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def require_released(grid):
  """The `grid=` argument: 'released' or the path of a weights CSV."""
  if grid != "released" and not os.path.isfile(grid):
    raise ValueError(f"grid={grid!r}: no such weights file; give 'released' or the "
                     "path of a CSV in released_hyperparameters.csv's columns (a "
                     "launch.tune weights.csv); single weights: "
                     "--config.weights.<method>.alpha=...")


def file_weights(path, dataset, bits, method_names):
  """{method: weights block} from a weights CSV (columns dataset, bits,
  method, p, then one per weight; a cell is empty where a method lacks the
  weight), for `dataset` at exactly `bits`, each method at the levels the
  file gives it. A method the file lacks takes the weights of the method it
  extends (`inherited`) when that one is there; every other method of
  `method_names` must be there, with a value for each weight it declares;
  the error names what is missing."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  fixed = ("dataset", "bits", "method", "p")
  if not rows or any(k not in rows[0] for k in fixed):
    raise ValueError(f"grid={path}: expected a CSV with the columns {fixed} and "
                     "one per weight")
  held = sorted({(r["dataset"], int(r["bits"])) for r in rows})
  mine = [r for r in rows if (r["dataset"], int(r["bits"])) == (dataset, bits)]
  present = {r["method"] for r in mine}
  chains = {m: extension_chain(m, present) for m in method_names}
  missing = [m for m, chain in chains.items() if not chain]
  if missing:
    raise ValueError(f"grid={path}: no weights for dataset={dataset!r}, bits={bits}, "
                     f"methods {missing} (nor for a method they extend; the file holds "
                     f"(dataset, bits) {held} and methods {sorted(present)} for this cell)")
  return {m: inherit_along(chain, file_block(path, mine, chain[-1]))
          for m, chain in chains.items()}


def file_block(path, rows, method):
  """The weights block of `method` from its rows of a weights CSV."""
  by_level = {round(float(r["p"]), 6): r for r in rows if r["method"] == method}
  levels = tuple(sorted(by_level))
  values = {}
  for k in registry.get(method).weights:
    cells = [by_level[level].get(k) or "" for level in levels]
    if "" in cells:
      raise ValueError(f"grid={path}: method {method!r} declares weight {k!r}, which "
                       f"has no value at level(s) "
                       f"{[lv for lv, c in zip(levels, cells, strict=True) if c == '']}")
    values[k] = tuple(float(c) for c in cells)
  return weights(levels, **values)


def extension_chain(method, sources):
  """[method, the method it extends, ...] up to the first one in `sources`
  ([method] when it is there itself), or [] when none of them is."""
  chain = [method]
  while chain[-1] not in sources:
    m = registry.METHODS.get(chain[-1])
    if m is None or m.extends is None:
      return []
    chain.append(m.extends)
  return chain


def inherited(block, method):
  """`method`'s weights block from the block of the method it extends: the
  base's values for the weights they share (registry.shared_weights; the
  base's default where its block has none) and `method`'s declared
  defaults for the rest, on the block's levels (one value per level when
  it names levels, else one for every level)."""
  m = registry.get(method)
  base, shared = registry.get(m.extends), registry.shared_weights(method)
  levels = tuple(block.get("levels", ()))
  values = {}
  for k, default in m.weights.items():
    given = block.get(k) if k in shared else None
    if given is None:
      values[k] = (base.weights[k] if k in shared else default,) * max(len(levels), 1)
    else:
      values[k] = tuple(given) if isinstance(given, (tuple, list)) else (given,)
  return weights(levels, **values)


def inherit_along(chain, block):
  """The block of chain[0] from `block`, that of chain[-1], each method of
  the chain extending the next (see `extension_chain`)."""
  for name in reversed(chain[:-1]):
    block = inherited(block, name)
  return block


def inherit_weights(c, sources):
  """Gives each method of c.methods that extends one of `sources` (directly
  or through other methods) its base's weights from c.weights (`inherited`);
  a config calls it once it has set the blocks of `sources`."""
  for m in c.methods:
    chain = extension_chain(m, sources)
    if len(chain) > 1 and chain[-1] in c.weights:
      c.weights[m] = inherit_along(chain, c.weights[chain[-1]])


def released_bits(bits):
  """The released sweeps exist for 16 and 32 bits; other lengths borrow the
  nearer one's weights (ties go to 32)."""
  return 16 if bits < 24 else 32


def released_weights(dataset, bits, method):
  """(alpha, beta, gamma) per level 0.1 .. 1.0 from the study's sweep scripts
  (METHOD.md section 7), as a weights block."""
  with open(RELEASED_CSV, newline="") as f:
    rows = [r for r in csv.DictReader(f) if (r["dataset"], int(r["bits"]),
                                              r["method"]) == (dataset, bits, method)]
  by_level = {round(float(r["p"]), 2): r for r in rows}
  if sorted(by_level) != list(RELEASED_LEVELS):
    raise ValueError(f"no released grid for dataset={dataset!r}, bits={bits}, "
                     f"method={method!r}")
  column = lambda k: tuple(float(by_level[level][k]) for level in RELEASED_LEVELS)
  names = [k for k in ("alpha", "beta", "gamma") if k in registry.get(method).weights]
  return weights(RELEASED_LEVELS, **{k: column(k) for k in names})


def study_config(arg, released_dataset, *, weights_key="", **extra_args):
  """The study's sweep for one dataset: the three methods (or those `arg`
  names), levels 0.1 .. 1.0 each with its released weights, 5 seeds. A
  method that extends a study method (registry `extends`) gets that
  method's released values for the weights they share and its own
  defaults for the rest.

  `weights_key` (default `released_dataset`) is the dataset column of a
  tune's weights.csv and of a `grid=PATH.csv` read back: a user's corpus
  that starts from another corpus's released weights keeps its own name.
  Returns (config, parsed arguments); `extra_args` are further typed
  arguments with their defaults (e.g. source="raw").
  """
  args = parse_arg(arg, method="ssb_vae", bits=16, grid="released", **extra_args)
  require_released(args["grid"])
  c = base_config(method_tuple(args["method"], STUDY_METHODS), args["bits"])
  c.seeds = (0, 1, 2, 3, 4)
  c.levels = RELEASED_LEVELS
  for m in STUDY_METHODS:
    c.weights[m] = released_weights(released_dataset, released_bits(c.bits), m)
  inherit_weights(c, STUDY_METHODS)  # e.g. cv_hash: ssb_vae's rows, kappa = 1
  use_grid(c, args["grid"], weights_key or released_dataset)
  return c, args


def use_grid(c, grid: str, dataset: str):
  """Keys a tune's weights.csv by `dataset` (c.tune.dataset_name) and, when
  `grid` is a weights CSV (not "released", nor "" for the config's own
  weights), takes every method's weights, and the levels they all share,
  from it (a sweep over other levels fails config_check naming the level)."""
  c.tune.dataset_name = dataset
  if grid in ("released", ""):
    return
  require_released(grid)
  blocks = file_weights(grid, dataset, c.bits, c.methods)
  for m, block in blocks.items():
    c.weights[m] = block
  common = set.intersection(*(set(b.levels) for b in blocks.values()))
  c.levels = tuple(sorted(common)) or c.levels
