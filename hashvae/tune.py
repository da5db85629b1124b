"""Choosing the loss weights on validation: a search as one compiled program
per method, then the chosen weights as an ordinary sweep.

A search is a grid of candidate x level x seed runs (tune_space) trained on
`tune_space.search_dataset` (the training split as database, the
validation split as queries; the test split is never passed in). With
successive halving, round i trains the surviving runs to rung_epochs[i]
epochs and keeps the best 1/eta candidates of each level; a survivor
continues from its saved state, so its trajectory is exactly the one full
training would give it. Every round, chunk and method runs the same
compiled program (grid.grid_program, one chunk width), resumed from its
checkpoints like a sweep.

Workdir layout (all written by process 0):
  config.json           the tune's config (a workdir holds one tune)
  search/<method>/rung_<i>.json   a finished round's validation scores
  search/<method>/rung_<i>/chunk_<n>/   its checkpoints (removed when done)
  search/<method>.json  the method's finished search
  candidates.csv, weights.csv, search.json, tune_<metric>.png
  final/                the chosen weights as a sweep (config.json,
                        results.csv, summaries), on the test queries
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from typing import Optional

import jax
import ml_collections
import numpy as np

from hashvae import experiment, fitted, methods, metrics, results, sharding, workdir
from hashvae import grid as grid_lib
from hashvae import tune_space as space
from hashvae.checkpoint import Checkpoints
from hashvae.train import make_run

log = logging.getLogger("hashvae")

# What --restart removes besides workdir.OUTPUTS.
OUTPUTS = ("search", "final", "candidates.csv", "weights.csv", "search.json")


@dataclasses.dataclass(frozen=True)
class Search:
  """A finished search: one record per run, the choice per (method, level)."""

  records: list  # dicts: method, level, seed, candidate, weights, epochs, status, val_*
  chosen: dict  # method -> {level: candidate index}
  candidates: dict  # method -> [tune_space.Candidate]
  cost: dict  # method -> {"run_epochs", "full_run_epochs", "seconds", "rungs"}


# --- train state moved between rounds ------------------------------------------

def _unkey(tree):
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _is_key(x) -> bool:
  return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _rekey(tree, like):
  return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(
      x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x, tree, like)


def seed_round(target: Checkpoints, like, rows: np.ndarray, before: dict):
  """Writes into `target` the state of the runs `rows` at the end of the
  previous round, gathered from that round's chunk checkpoints, so that
  grid.train_grid continues them from there. `like`: an initial state of
  the new chunk (shapes and placement); `before`: the previous round's
  rows, epochs, folder and chunk width."""
  slot = {int(r): i for i, r in enumerate(before["rows"])}
  width, cache, picked = before["width"], {}, []
  for row in rows:
    chunk, pos = divmod(slot[int(row)], width)
    if chunk not in cache:
      source = Checkpoints(os.path.join(before["folder"], f"chunk_{chunk}"), every=0)
      try:
        state, saved = source.restore(before["epochs"], like)
      finally:
        source.close()
      # Rows come in grid order, so a chunk is never needed again once passed.
      cache = {chunk: (sharding.to_host(_unkey(state)), saved)}
    picked.append((*cache[chunk], pos))
  leaves = [jax.tree.map(lambda x, pos=pos: np.asarray(x)[pos], state)
            for state, _, pos in picked]
  history = [{k: [saved[e][k][pos] for _, saved, pos in picked] for k in picked[0][1][e]}
             for e in range(len(picked[0][1]))]
  total = jax.tree.leaves(like)[0].shape[0]
  by_run = sharding.split_runs(jax.tree.leaves(like)[0].sharding.mesh)
  stacked = jax.tree.map(lambda *xs: sharding.place(
      sharding.pad_runs(np.stack(xs), total), by_run), *leaves)
  target.save(before["epochs"], _rekey(stacked, like), history)


# --- one method's search -------------------------------------------------------

def _score(out, data, ks) -> list[dict]:
  """Validation metrics of each run of a chunk's output (`data` is the
  search's: its test split holds the validation items)."""
  return [dict(metrics.evaluate(out.query_codes[i], out.db_codes[i], data.test.labels,
                                data.database.labels, ks),
               status="ok" if out.diverged_at[i] < 0 else "diverged")
          for i in range(len(out.db_codes))]


def train_round(config, run, program, grid, rows, epochs, folder, width, before,
                data) -> list[dict]:
  """Trains the runs `rows` of `grid` to `epochs` epochs in chunks of
  `width` (one program), continuing from `before` (the previous round) when
  given; returns each run's validation scores."""
  scores, ks = [], tuple(config.ks)
  starts = range(0, len(rows), width)
  for n, first in enumerate(starts):
    part_rows = rows[first:first + width]
    part = grid.take(part_rows)
    ckpt = Checkpoints(os.path.join(folder, f"chunk_{n}"), every=config.checkpoint_every,
                       keep=config.checkpoints_to_keep)
    try:
      if before is not None and ckpt.latest_epoch() is None:
        seed_round(ckpt, grid_lib.initial_state(program, part), part_rows, before)
      progress = grid_lib.log_epoch(
          f"tune {grid.method} to epoch {epochs}, chunk {n + 1}/{len(starts)}", len(part))
      out = grid_lib.train_grid(dataclasses.replace(run, epochs=epochs), part,
                                config.base_seed, progress, ckpt, program)
    finally:
      ckpt.close()
    scores += _score(out, data, ks)
  return scores


def search_method(config, data, method: str, folder: str) -> dict:
  """Trains and scores one method's candidates (with halving when asked);
  returns {"records": [...], "cost": {...}}, also saved as <folder>.json."""
  done = folder + ".json"
  if os.path.exists(done):
    log.info("tune %s: search already finished (%s)", method, done)
    with open(done, encoding="utf-8") as f:
      return json.load(f)
  cands = space.candidates(config, method)
  grid, cand_of = space.search_grid(config, method, cands)
  base = [dict(method=method, level=r["level"], seed=r["seed"], candidate=int(c),
               source=cands[int(c)].source, **{k: v for k, v in r.items()
                                                if k not in ("method", "level", "seed")})
          for r, c in zip(grid.rows(), cand_of, strict=True)]
  start, metric = time.perf_counter(), space.metric_name(config)
  if methods.get(method).fit is not None:  # fitted on the host: nothing to halve
    out = fitted.fit_grid(config, data, grid)
    scores = _score(out, data, tuple(config.ks))
    rungs, spent, full = (0,), 0, 0
    records = [dict(b, epochs=0, status=s["status"], **{"val_" + k: v for k, v in s.items()
                                                         if k != "status"})
               for b, s in zip(base, scores, strict=True)]
  else:
    sconfig = space.search_config(config)
    run = make_run(sconfig, data, method)
    mesh = sharding.run_mesh(config.devices)
    width = grid_lib.chunk_size(sconfig, run, len(grid), mesh)
    program = grid_lib.grid_program(run, config.base_seed, mesh, runs=width)
    rungs = space.rung_epochs(config.epochs, config.tune.halving_rounds,
                              config.tune.halving_eta)
    log.info("tune %s: %d candidates x %d levels x %d seeds = %d runs, rounds to "
             "epochs %s, chunks of %d over %d device(s)", method, len(cands),
             len(space.levels(config)), len(config.tune.seeds), len(grid), rungs,
             width, mesh.devices.size)
    rows, before, latest, spent = np.arange(len(grid)), None, {}, 0
    for i, epochs in enumerate(rungs):
      rung_folder = os.path.join(folder, f"rung_{i}")
      if os.path.exists(rung_folder + ".json"):
        with open(rung_folder + ".json", encoding="utf-8") as f:
          scores = json.load(f)["scores"]
      else:
        scores = train_round(sconfig, run, program, grid, rows, epochs, rung_folder,
                             width, before, data)
        results.write_json(rung_folder + ".json", dict(epochs=epochs,
                                                       rows=rows.tolist(), scores=scores))
      if before is not None:  # this round's checkpoints now hold the survivors
        shutil.rmtree(before["folder"], ignore_errors=True)
      spent += len(rows) * (epochs - (before["epochs"] if before else 0))
      for row, s in zip(rows, scores, strict=True):
        history = latest.get(int(row), {}).get("history", {})
        if before is not None:
          history = dict(history, **{f"val_{metric}_epoch{before['epochs']}":
                                     latest[int(row)][f"val_{metric}"]})
        latest[int(row)] = dict(base[row], epochs=epochs, status=s["status"],
                                history=history, **{"val_" + k: v for k, v in s.items()
                                                    if k != "status"})
      before = dict(rows=rows, epochs=epochs, folder=rung_folder, width=width)
      if i + 1 < len(rungs):
        means = space.seed_means([dict(latest[int(r)], **{metric: latest[int(r)][
            f"val_{metric}"]}) for r in rows], metric)
        kept = space.keep_top(means, config.tune.halving_eta)
        rows = np.array([r for r in rows if cand_of[r] in kept[grid.levels[r]]])
        log.info("tune %s: round %d kept %d of %d runs", method, i + 1, len(rows),
                 len(scores))
    shutil.rmtree(folder, ignore_errors=True)
    records = [dict({k: v for k, v in latest[r].items() if k != "history"},
                    **latest[r]["history"]) for r in range(len(grid))]
    full = len(grid) * config.epochs
  result = dict(records=records, cost=dict(
      run_epochs=spent, full_run_epochs=full, rungs=list(rungs),
      seconds=round(time.perf_counter() - start, 1)))
  results.write_json(done, result)
  return result


# --- the whole search, the outputs, the final sweep ----------------------------

def search(config, dataset, folder: str) -> Search:
  """Searches every method of `config` on `dataset`'s validation split
  (tune_space.search_dataset: the test split is dropped before anything is
  trained) and selects per (method, level). `folder` keeps the progress."""
  space.check(config)
  data = space.search_dataset(dataset, config.tune)
  experiment.checked_dataset(space.search_config(config), data)
  log.info("tune: %d training items as database, %d validation items as queries",
           len(data.database), len(data.test))
  metric = space.metric_name(config)
  records, chosen, cands, cost = [], {}, {}, {}
  for method in config.methods:
    found = search_method(config, data, method, os.path.join(folder, method))
    cands[method] = space.candidates(config, method)
    cost[method] = found["cost"]
    full = max(r["epochs"] for r in found["records"])  # the last round's runs
    last = [dict(r, **{metric: r[f"val_{metric}"]}) for r in found["records"]
            if r["epochs"] == full]
    chosen[method] = space.select(space.seed_means(last, metric))
    records += found["records"]
  return Search(records, chosen, cands, cost)


def chosen_weights(config, found: Search) -> dict:
  """method -> {level: {weight: value}} of the selected candidates."""
  lv = space.levels(config)
  return {m: {level: {k: v[lv.index(level)]
                      for k, v in found.candidates[m][cand].values.items()}
              for level, cand in per_level.items()}
          for m, per_level in found.chosen.items()}


def final_config(config, found: Search):
  """`config` with each method's selected weights per searched level, over
  those levels and config.seeds: the sweep that reports the choice on test."""
  c = config.copy_and_resolve_references()
  lv = space.levels(config)
  with c.unlocked():
    c.levels = lv
    for m, per_level in chosen_weights(config, found).items():
      names = list(next(iter(per_level.values())))
      # A weights block as configs.base.weights writes one: a value per level.
      c.weights[m] = ml_collections.ConfigDict(dict(
          {k: tuple(per_level[level][k] for level in lv) for k in names}, levels=lv))
  return c


def write_search(config, found: Search, folder: str) -> list[str]:
  """weights.csv, search.json and the figure (candidates.csv comes with the
  test columns, after the final sweep)."""
  name = config.tune.dataset_name or config.data.name
  rows = [r for m, per_level in chosen_weights(config, found).items()
          for r in space.weight_rows(name, config.bits, m, per_level)]
  paths = [os.path.join(folder, "weights.csv"), os.path.join(folder, "search.json")]
  results.write_csv(paths[0], rows)
  results.write_json(paths[1], dict(
      metric=space.metric_name(config), chosen={m: {str(lv): c for lv, c in v.items()}
                                                for m, v in found.chosen.items()},
      cost=found.cost))
  figure = os.path.join(folder, f"tune_{space.metric_name(config).replace('@', '_at_')}.png")
  try:
    validation_figure(found, space.metric_name(config), figure, space.levels(config))
    paths.append(figure)
  except ImportError as e:  # matplotlib is optional for the search itself
    log.warning("no figure: %s", e)
  return paths


def candidate_rows(found: Search, final_rows: Optional[list] = None) -> list[dict]:
  """candidates.csv: every run of the search; the selected candidates' rows
  also carry test_* = the final sweep's mean over its seeds at that level."""
  test = {}
  for r in final_rows or []:
    if r.get("status", "ok") == "ok":
      test.setdefault((r["method"], r["level"]), []).append(r)
  out = []
  for r in found.records:
    row = dict(r, selected=int(found.chosen[r["method"]].get(r["level"]) == r["candidate"]))
    done = test.get((r["method"], r["level"]), [])
    if row["selected"] and done:
      for k in [k for k in done[0] if "@" in k]:
        row[f"test_{k}"] = float(np.mean([float(x[k]) for x in done]))
    out.append(row)
  return out


def validation_figure(found: Search, metric: str, path: str, levels: tuple):
  """The mean validation metric over seeds against each searched weight:
  one row of panels per method, a colour per level, the choice starred."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  by_method = {}
  for r in found.records:
    by_method.setdefault(r["method"], []).append(r)
  grid = {m: [k for k in found.candidates[m][0].values
              if len({c.values[k] for c in found.candidates[m]}) > 1] or
          list(found.candidates[m][0].values)[:1] for m in by_method}
  cols = max(len(v) for v in grid.values())
  fig, axes = plt.subplots(len(grid), cols, figsize=(4 * cols, 3.2 * len(grid)),
                           squeeze=False)
  for row, (m, names) in enumerate(grid.items()):
    recs = by_method[m]
    means = {}
    for r in recs:
      if r["status"] == "ok":
        means.setdefault((r["level"], r["candidate"], r["epochs"]), []).append(
            r[f"val_{metric}"])
    full = max(r["epochs"] for r in recs)
    for col in range(cols):
      ax = axes[row][col]
      if col >= len(names):
        ax.axis("off")
        continue
      k = names[col]
      for j, level in enumerate(sorted({r["level"] for r in recs})):
        at = lambda c, m=m, k=k, level=level: (
            found.candidates[m][c].values[k][levels.index(level)])
        pts = [(at(c), np.mean(v), e)
               for (lv, c, e), v in means.items() if lv == level]
        for done, marker in ((True, "o"), (False, "x")):
          sel = [(x, y) for x, y, e in pts if (e == full) == done]
          if sel:
            ax.scatter(*zip(*sel, strict=True), marker=marker, color=f"C{j}",
                       label=f"p={level:g}" + ("" if done else " (stopped early)"))
        best = found.chosen[m].get(level)
        if best is not None and (level, best, full) in means:
          ax.scatter([at(best)],
                     [np.mean(means[(level, best, full)])], marker="*", s=200,
                     color=f"C{j}", edgecolors="black", zorder=3)
      ax.set(xscale="log", xlabel=k, ylabel=f"validation {metric}", title=m)
      ax.grid(alpha=0.3)
      if col == 0:
        ax.legend(fontsize=7)
  fig.tight_layout()
  with results.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110)
  plt.close(fig)


def restart(folder: str):
  """Removes a previous tune's outputs from `folder` (--restart)."""
  for name in OUTPUTS + workdir.OUTPUTS:
    target = os.path.join(folder, name)
    if os.path.isdir(target):
      shutil.rmtree(target)
    elif os.path.exists(target):
      os.remove(target)


def run_tune(config, dataset, folder: str, restart_final: bool = False):
  """The search, its outputs and the final sweep of the chosen weights on
  the test queries (in folder/final, an ordinary sweep's workdir). Returns
  (Search, the final SweepResult)."""
  found = search(config, dataset, os.path.join(folder, "search"))
  written = write_search(config, found, folder)
  results.write_csv(os.path.join(folder, "candidates.csv"), candidate_rows(found))
  for m, cost in found.cost.items():
    log.info("tune %s: %d run-epochs of %d for full training of every candidate "
             "(%.0f%%), %.1fs", m, cost["run_epochs"], cost["full_run_epochs"],
             100 * cost["run_epochs"] / max(cost["full_run_epochs"], 1), cost["seconds"])
  # Only now is the test split read: the choice above is final.
  final = final_config(config, found)
  final_folder = os.path.join(folder, "final")
  workdir.prepare(final_folder, final.to_dict(), restart=restart_final)
  sweep = experiment.run_sweep(final, dataset, workdir=final_folder)
  written += experiment.write_outputs(final_folder, sweep)
  results.write_csv(os.path.join(folder, "candidates.csv"),
                    candidate_rows(found, sweep.rows))
  log.info("tune wrote %s", ", ".join(os.path.relpath(p, folder) for p in written))
  return found, sweep


def comparison(found: Search, metric: str) -> list[dict]:
  """Per (method, level): the selected candidate's validation mean and the
  config's own (candidate 0 with tune.include_config), each at the last
  round it reached (config_epochs < epochs: halving stopped it early)."""
  out = []
  for m, per_level in found.chosen.items():
    recs = [dict(r, **{metric: r[f"val_{metric}"]}) for r in found.records
            if r["method"] == m]
    full = max(r["epochs"] for r in recs)
    for level, cand in sorted(per_level.items()):
      mean = lambda c, level=level, recs=recs: space.seed_means(
          [r for r in recs if r["level"] == level and r["candidate"] == c], metric)
      own = found.candidates[m][0].source == "config"
      config = mean(0) if own else {}
      out.append(dict(method=m, level=level, candidate=cand, epochs=full,
                      chosen=mean(cand)[(level, cand)],
                      config=config.get((level, 0), math.nan),
                      config_epochs=max((r["epochs"] for r in recs if r["level"] == level
                                         and r["candidate"] == 0), default=0)))
  return out
