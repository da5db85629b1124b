"""How a search chooses: means over seeds, ranking, and successive halving's
cut, also replayed from a full search to audit it. Pure functions of the
search's records (dicts with level, candidate, status and the metrics).
"""

from __future__ import annotations

import math

import numpy as np


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


def keep_top(means: dict, eta: int) -> dict:
  """{level: set of candidates kept}: the best ceil(n / eta) of each level."""
  return {level: set(order[:-(-len(order) // eta)])
          for level, order in ranked(means).items()}


def select(means: dict) -> dict:
  """{level: the candidate with the best mean}."""
  return {level: order[0] for level, order in ranked(means).items()}


def rung_epochs(epochs: int, rounds: int, eta: int) -> tuple:
  """Epochs each halving round trains to, the last the full `epochs`:
  epochs / eta**(rounds - i) for round i (at least 1, no repeats)."""
  points = [max(1, int(round(epochs / eta ** (rounds - i)))) for i in range(rounds + 1)]
  return tuple(sorted(set(points)))


def replay_halving(records: list[dict], metric: str, rungs: tuple, eta: int):
  """(choice {level: candidate}, run-epochs spent) of successive halving
  over `rungs` (epochs, the last the full training), replayed from
  `records` of runs trained through every rung without a cut: a record
  holds `val_<metric>` at its last epoch and `val_<metric>_epoch<E>` at
  earlier rungs. A run's final status counts at every rung."""
  def at(r, epochs):
    return r[f"val_{metric}"] if epochs == r["epochs"] else r[f"val_{metric}_epoch{epochs}"]

  alive, spent, done = records, 0, 0
  for epochs in rungs:
    spent += len(alive) * (epochs - done)
    done = epochs
    means = seed_means([dict(r, **{metric: at(r, epochs)}) for r in alive], metric)
    if epochs == rungs[-1]:
      return select(means), spent
    kept = keep_top(means, eta)
    alive = [r for r in alive if r["candidate"] in kept[r["level"]]]
  raise ValueError("replay_halving needs at least one rung")


def halving_audit(records: list[dict], metric: str, epochs: int, rounds: int,
                  eta: int) -> list[dict]:
  """Per halving setting of 1..`rounds` rounds and per level: the candidate
  halving keeps to the end against the one full training chooses (with
  both validation means at full training), and the run-epochs halving
  spends. `records`: one method's search with tune.audit_halving (every
  run trained to `epochs` and scored at each rung on the way)."""
  means = seed_means([dict(r, **{metric: r[f"val_{metric}"]}) for r in records], metric)
  full = select(means)
  out = []
  for n in range(1, rounds + 1):
    rungs = rung_epochs(epochs, n, eta)
    picked, spent = replay_halving(records, metric, rungs, eta)
    out += [dict(rounds=n, rungs="/".join(map(str, rungs)), level=level, full=full[level],
                 halving=picked[level], agree=int(full[level] == picked[level]),
                 full_val=means[level, full[level]], halving_val=means[level, picked[level]],
                 run_epochs=spent, full_run_epochs=len(records) * epochs)
            for level in sorted(full)]
  return out
