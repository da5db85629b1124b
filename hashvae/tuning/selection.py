"""How a search chooses: means over seeds, ranking, and successive halving's
cut, also replayed from a full search to audit it. Pure functions of the
search's records (dicts with level, candidate, status and the metrics).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats


def seed_means(records: list[dict], metric: str) -> dict:
  """{(level, candidate): mean over seeds of `metric`}; a candidate with a
  diverged seed scores -inf (it is never preferred to one that trains)."""
  groups = {}
  for r in records:
    value = r[metric] if r["status"] == "ok" else -math.inf
    groups.setdefault((r["level"], r["candidate"]), []).append(value)
  return {k: (-math.inf if -math.inf in v else float(np.mean(v)))
          for k, v in groups.items()}


def ranked(means: dict) -> dict:
  """{level: [candidate, ...] best first}; ties go to the lower index."""
  by_level = {}
  for (level, cand), value in means.items():
    by_level.setdefault(level, []).append((-value, cand))
  return {level: [c for _, c in sorted(v)] for level, v in by_level.items()}


def keep_top(means: dict, eta: int, always=frozenset()) -> dict:
  """{level: set of candidates kept}: the best ceil(n / eta) of each level,
  and the candidates of `always` that have not diverged."""
  return {level: set(order[:-(-len(order) // eta)]) | {
      c for c in order if c in always and means[level, c] > -math.inf}
          for level, order in ranked(means).items()}


def config_candidates(records: list[dict], keep_config: bool) -> set:
  """The candidates that pass every cut: with `keep_config`, the config's
  own weights (records with source "config"), else none. A config row that
  starts slowly is otherwise cut while near chance (docs/tuning.md, "When
  to make the first cut": PHS-GS's released 0.1 rows)."""
  return {r["candidate"] for r in records if keep_config and r.get("source") == "config"}


def select(means: dict) -> dict:
  """{level: the candidate with the best mean}."""
  return {level: order[0] for level, order in ranked(means).items()}


def rung_epochs(epochs: int, rounds: int, eta: int, first_fraction: float = 0.0) -> tuple:
  """Epochs each halving round trains to, the last the full `epochs`:
  epochs / eta**(rounds - i) for round i, but never before
  ceil(first_fraction * epochs) (nor epoch 1); rounds that the floor
  merges are trained once, so fewer rounds may remain.

  rung_epochs(30, 2, 3) == (3, 10, 30); with first_fraction 0.5 (the
  default), (15, 30): on three corpora of 2,000 documents a cut at epoch
  3 or 10 lost the candidate full training chose (docs/tuning.md, "When
  to make the first cut").
  """
  floor = max(1, math.ceil(first_fraction * epochs - 1e-9))
  points = [min(epochs, max(floor, int(round(epochs / eta ** (rounds - i)))))
            for i in range(rounds + 1)]
  return tuple(sorted(set(points)))


def replay_halving(records: list[dict], metric: str, rungs: tuple, eta: int,
                   keep_config: bool = False):
  """(choice {level: candidate}, run-epochs spent) of successive halving
  over `rungs` (epochs, the last the full training), replayed from
  `records` of runs trained through every rung without a cut: a record
  holds `val_<metric>` at its last epoch and `val_<metric>_epoch<E>` at
  earlier rungs. A run's final status counts at every rung; with
  `keep_config`, the config's candidates pass every cut."""
  def at(r, epochs):
    return r[f"val_{metric}"] if epochs == r["epochs"] else r[f"val_{metric}_epoch{epochs}"]

  alive, spent, done, always = records, 0, 0, config_candidates(records, keep_config)
  for epochs in rungs:
    spent += len(alive) * (epochs - done)
    done = epochs
    means = seed_means([dict(r, **{metric: at(r, epochs)}) for r in alive], metric)
    if epochs == rungs[-1]:
      return select(means), spent
    kept = keep_top(means, eta, always)
    alive = [r for r in alive if r["candidate"] in kept[r["level"]]]
  raise ValueError("replay_halving needs at least one rung")


def halving_audit(records: list[dict], metric: str, epochs: int, rounds: int,
                  eta: int, first_fraction: float = 0.0,
                  keep_config: bool = False) -> list[dict]:
  """Per halving setting of 1..`rounds` rounds and per level: the candidate
  halving keeps to the end against the one full training chooses (with
  both validation means at full training), and the run-epochs halving
  spends. `records`: one method's search with tune.audit_halving (every
  run trained to `epochs` and scored at each rung on the way); the rungs
  follow rung_epochs with `first_fraction`, and with `keep_config` the
  config's candidates pass every cut, as in the search."""
  means = seed_means([dict(r, **{metric: r[f"val_{metric}"]}) for r in records], metric)
  full = select(means)
  out = []
  for n in range(1, rounds + 1):
    rungs = rung_epochs(epochs, n, eta, first_fraction)
    picked, spent = replay_halving(records, metric, rungs, eta, keep_config)
    out += [dict(rounds=n, rungs="/".join(map(str, rungs)), level=level, full=full[level],
                 halving=picked[level], agree=int(full[level] == picked[level]),
                 full_val=means[level, full[level]], halving_val=means[level, picked[level]],
                 run_epochs=spent, full_run_epochs=len(records) * epochs)
            for level in sorted(full)]
  return out


def cut_spread(records: list[dict], metric: str, eta: int,
               keep_config: bool = False) -> list[dict]:
  """Per level and per epoch E at which `records` were scored (an audit:
  every run trained in full, `val_<metric>_epoch<E>` on the way), how well a
  cut at E would tell the candidates apart:
  - spread: std over candidates of their seed means at E; noise: the mean
    over candidates of the std over seeds (0 with one seed);
  - rho: Spearman correlation of the candidates' means at E with their
    means after full training (nan where either is constant);
  - kept: 1 when the ceil(n / eta) best at E (and with `keep_config` the
    config's candidates) hold full training's choice; gap: full training's
    best mean minus the best final mean of those kept.
  A diverged candidate ranks last at every epoch."""
  full = max(r["epochs"] for r in records)
  cuts = sorted({int(k.rsplit("_epoch", 1)[1]) for r in records for k in r
                 if k.startswith(f"val_{metric}_epoch")}) + [full]
  at = lambda r, e: r[f"val_{metric}"] if e == full else r[f"val_{metric}_epoch{e}"]
  final = seed_means([dict(r, **{metric: at(r, full)}) for r in records], metric)
  always = config_candidates(records, keep_config)
  out = []
  for level in sorted({lv for lv, _ in final}):
    cands = sorted(c for lv, c in final if lv == level)
    end = np.array([final[level, c] for c in cands])
    for e in cuts:
      mine = [dict(r, **{metric: at(r, e)}) for r in records if r["level"] == level]
      means = seed_means(mine, metric)
      now = np.array([means[level, c] for c in cands])
      kept = keep_top(means, eta, always)[level]
      per_seed = [[r[metric] for r in mine if r["candidate"] == c and r["status"] == "ok"]
                  for c in cands]
      out.append(dict(level=level, epoch=e, candidates=len(cands),
                      spread=float(np.std(now[np.isfinite(now)])),
                      noise=float(np.mean([np.std(v) for v in per_seed if v])),
                      rho=spearman(now, end), kept=int(cands[int(np.argmax(end))] in kept),
                      gap=float(np.max(end) - max(final[level, c] for c in kept))))
  return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation of two [n] arrays (ties share their mean
  rank; -inf ranks last); nan when either is constant."""
  ra, rb = (scipy.stats.rankdata(np.where(np.isfinite(x), x, -np.inf)) for x in (a, b))
  if np.ptp(ra) == 0 or np.ptp(rb) == 0:
    return math.nan
  return float(np.corrcoef(ra, rb)[0, 1])
