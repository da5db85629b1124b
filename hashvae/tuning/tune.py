"""Choosing the loss weights on validation: a search as one compiled program
per method, then the chosen weights as an ordinary sweep.

A search is a grid of candidate x level x seed runs (tune_space) trained on
`tune_space.search_dataset` (the training split as database, the
validation split as queries; the test split is never passed in). With
successive halving, round i trains the surviving runs to rung_epochs[i]
epochs and keeps the best 1/eta candidates of each level; a survivor
continues from its saved state. Each round runs in chunks of the width
its own run count gives (specs.chunk_size), one compiled program a width:
a later round's few survivors are not padded to the first round's width,
where every padded run costs as much as a real one on CPU. Rounds resume
from their checkpoints like a sweep.

Workdir layout (all written by process 0):
  config.json           the tune's config (a workdir holds one tune)
  search/<method>/rung_<i>.json   a finished round's validation scores
  search/<method>/rung_<i>/chunk_<n>/   its checkpoints (removed when done)
  search/<method>.json  the method's finished search
  candidates.csv, weights.csv, search.json, tune_<metric>.png,
  halving_audit.csv     (tune.audit_halving) halving replayed against full training
  final/                the chosen weights as a sweep (config.json,
                        results.csv, summaries), on the test queries
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time

import jax
import ml_collections
import numpy as np

from hashvae import methods
from hashvae.core import sharding
from hashvae.retrieval import metrics
from hashvae.store import checkpoint, results, workdir
from hashvae.store.checkpoint import Checkpoints
from hashvae.sweep import experiment, specs
from hashvae.training import grid as grid_lib
from hashvae.tuning import metric_choice, selection
from hashvae.tuning import tune_space as space
from hashvae.tuning.tune_outputs import candidate_rows, chosen_weights, write_search
from hashvae.tuning.tune_space import Search

log = logging.getLogger("hashvae")

# What --restart removes besides workdir.OUTPUTS.
OUTPUTS = ("search", "final", "candidates.csv", "weights.csv", "search.json",
           "halving_audit.csv")


# --- train state moved between rounds ------------------------------------------

def seed_round(target: Checkpoints, like, source_like, rows: np.ndarray, before: dict):
  """Writes into `target` the state of the runs `rows` at the end of the
  previous round, gathered from that round's chunk checkpoints, so that
  grid.train_grid continues them from there. `like`: an initial state of
  the new chunk (shapes and placement); `source_like`: one of the previous
  round's chunks; `before`: the previous round's rows, epochs, folder and
  program (its chunk width: program.runs)."""
  slot = {int(r): i for i, r in enumerate(before["rows"])}
  width, cache, picked = before["program"].runs, {}, []
  for row in rows:
    chunk, pos = divmod(slot[int(row)], width)
    if chunk not in cache:
      source = Checkpoints(os.path.join(before["folder"], f"chunk_{chunk}"), every=0)
      try:
        state, saved = source.restore(before["epochs"], source_like)
      finally:
        source.close()
      # Rows come in grid order, so a chunk is never needed again once passed.
      cache = {chunk: (sharding.to_host(checkpoint.unkey(state)), saved)}
    picked.append((*cache[chunk], pos))
  leaves = [jax.tree.map(lambda x, pos=pos: np.asarray(x)[pos], state)
            for state, _, pos in picked]
  history = [{k: [saved[e][k][pos] for _, saved, pos in picked] for k in picked[0][1][e]}
             for e in range(len(picked[0][1]))]
  total = jax.tree.leaves(like)[0].shape[0]
  by_run = sharding.split_runs(jax.tree.leaves(like)[0].sharding.mesh)
  stacked = jax.tree.map(lambda *xs: sharding.place(
      sharding.pad_runs(np.stack(xs), total), by_run), *leaves)
  target.save(before["epochs"], checkpoint.rekey(stacked, like), history)


# --- one method's search -------------------------------------------------------

def _score(out, data, ks) -> list[dict]:
  """Validation metrics of each run of a chunk's output (`data` is the
  search's: its test split holds the validation items)."""
  return [dict(metrics.evaluate(out.query_codes[i], out.db_codes[i], data.test.labels,
                                data.database_labels, ks),
               status="ok" if out.diverged_at[i] < 0 else "diverged")
          for i in range(len(out.db_codes))]


def train_round(config, run, program, grid, rows, epochs, folder, before,
                data) -> list[dict]:
  """Trains the runs `rows` of `grid` to `epochs` epochs in chunks of
  `program.runs`, continuing from `before` (the previous round: rows,
  epochs, folder, program) when given; returns each run's
  validation scores."""
  scores, ks, width = [], tuple(config.ks), program.runs
  starts = range(0, len(rows), width)
  for n, first in enumerate(starts):
    part_rows = rows[first:first + width]
    part = grid.take(part_rows)
    ckpt = Checkpoints(os.path.join(folder, f"chunk_{n}"), every=config.checkpoint_every,
                       keep=config.checkpoints_to_keep)
    try:
      if before is not None and ckpt.latest_epoch() is None:
        seed_round(ckpt, grid_lib.initial_state(program, part),
                   grid_lib.initial_state(before["program"], part), part_rows, before)
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
  cands = space.candidates(config, method)
  grid, cand_of = space.search_grid(config, method, cands)
  base = [dict(method=method, level=r["level"], seed=r["seed"], candidate=int(c),
               source=cands[int(c)].source, **{k: v for k, v in r.items()
                                                if k not in ("method", "level", "seed")})
          for r, c in zip(grid.rows(), cand_of, strict=True)]
  done, planned = folder + ".json", os.path.join(folder, "runs.json")
  weights = methods.get(method).weights
  if os.path.exists(done):
    log.info("tune %s: search already finished (%s)", method, done)
    with open(done, encoding="utf-8") as f:
      found = json.load(f)
    same_runs(found["records"], base, done, weights)
    shutil.rmtree(folder, ignore_errors=True)  # left by a stop just after `done`
    return found
  if os.path.exists(planned):
    with open(planned, encoding="utf-8") as f:
      same_runs(json.load(f), base, planned, weights)
  elif os.path.isdir(folder) and os.listdir(folder):
    raise workdir.WorkdirError(
        f"{folder} holds a search begun without a record of its candidates (an older "
        "version): pass --restart to search again, or use another --workdir")
  else:
    os.makedirs(folder, exist_ok=True)
    results.write_json(planned, base)
  start = time.perf_counter()
  if methods.get(method).fit is not None:  # fitted on the host: nothing to halve
    scores = _score(specs.fit_grid(config, data, grid), data, tuple(config.ks))
    records = [dict(b, epochs=0, status=s["status"], **_validation(s))
               for b, s in zip(base, scores, strict=True)]
    cost = dict(run_epochs=0, full_run_epochs=0, rungs=[0])
  else:
    log.info("tune %s: %d candidates x %d levels x %d seeds = %d runs", method, len(cands),
             len(space.levels(config)), len(config.tune.seeds), len(grid))
    records, cost = halving(config, data, method, folder, grid, cand_of, base)
  result = dict(records=records, cost=dict(cost, seconds=round(time.perf_counter() - start, 1)))
  results.write_json(done, result)
  shutil.rmtree(folder, ignore_errors=True)  # the rounds' files: all is in `done`
  return result


def same_runs(saved: list[dict], planned: list[dict], where: str, weights):
  """WorkdirError unless the runs saved in `where` are the runs `planned`
  (candidate, level, seed and weights, in order): a search resumed under a
  code or config change that alters the candidates must not mix them."""
  def key(rows):
    return [tuple(r.get(k) for k in ("candidate", "level", "seed", *weights)) for r in rows]
  if key(saved) != key(planned):
    raise workdir.WorkdirError(
        f"{where} holds a search of other candidates than this config gives (the "
        "candidates' rules or weights changed): pass --restart to search again, or "
        "use another --workdir")


def _validation(scores: dict) -> dict:
  """A run's validation scores as record fields (val_<metric>)."""
  return {"val_" + k: v for k, v in scores.items() if k != "status"}


def halving(config, data, method, folder, grid, cand_of, base):
  """The rounds of successive halving (one round, the full epochs, without
  it): each round trains its runs to the round's epochs in one compiled
  program, scores them on validation, and keeps the best 1/eta candidates
  of each level, and the config's own with tune.halving_keep_config (all
  of them with tune.audit_halving, which then replays the cut afterwards:
  selection.halving_audit). Returns (records [one per run of `grid`, at
  the last round it reached], cost)."""
  metric = space.metric_name(config)
  sconfig = space.search_config(config)
  run = specs.make_run(sconfig, data, method)
  mesh = sharding.run_mesh(config.devices)
  first = grid_lib.grid_program(run, config.base_seed, mesh,
                                runs=specs.chunk_size(sconfig, run, len(grid), mesh))
  # A round of fewer runs: the same jitted pieces and placed data, padded
  # to its own width (jit compiles once per width).
  program_for = lambda rows: dataclasses.replace(
      first, runs=specs.chunk_size(sconfig, run, len(rows), mesh))
  t = config.tune
  rungs = selection.rung_epochs(config.epochs, t.halving_rounds, t.halving_eta,
                                t.halving_first_fraction)
  if len(rungs) < t.halving_rounds + 1:
    log.info("tune %s: %d halving round(s), not %d: no cut before epoch %d "
             "(tune.halving_first_fraction=%g of %d epochs)", method, len(rungs) - 1,
             t.halving_rounds, rungs[0], t.halving_first_fraction, config.epochs)
  log.info("tune %s: rounds to epochs %s, chunks of %d over %d device(s)", method, rungs,
           first.runs, mesh.devices.size)
  rows, before, latest, spent = np.arange(len(grid)), None, {}, 0
  always = selection.config_candidates(base, t.halving_keep_config)
  for i, epochs in enumerate(rungs):
    rung_folder, program = os.path.join(folder, f"rung_{i}"), program_for(rows)
    if os.path.exists(rung_folder + ".json"):
      with open(rung_folder + ".json", encoding="utf-8") as f:
        scores = json.load(f)["scores"]
    else:
      scores = train_round(sconfig, run, program, grid, rows, epochs, rung_folder,
                           before, data)
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
                              history=history, **_validation(s))
    before = dict(rows=rows, epochs=epochs, folder=rung_folder, program=program)
    if i + 1 < len(rungs) and not config.tune.audit_halving:
      means = selection.seed_means([dict(latest[int(r)], **{metric: latest[int(r)][
          f"val_{metric}"]}) for r in rows], metric)
      kept = selection.keep_top(means, t.halving_eta, always)
      rows = np.array([r for r in rows if cand_of[r] in kept[grid.levels[r]]])
      log.info("tune %s: round %d kept %d of %d runs", method, i + 1, len(rows), len(scores))
  records = [dict({k: v for k, v in latest[r].items() if k != "history"},
                  **latest[r]["history"]) for r in range(len(grid))]
  return records, dict(run_epochs=spent, full_run_epochs=len(grid) * config.epochs,
                       rungs=list(rungs))


# --- the whole search, the outputs, the final sweep ----------------------------

def search(config, dataset, folder: str) -> Search:
  """Searches every method of `config` on `dataset`'s validation split
  (tune_space.search_dataset: the test split is dropped before anything is
  trained) and selects per (method, level). `folder` keeps the progress."""
  space.check(config)
  data = space.search_dataset(dataset, config.tune)
  metric, named = metric_choice.choose_metric(config, data), space.metric_name(config)
  config = metric_choice.with_metric(config, metric, data.database_size)
  experiment.checked_dataset(space.search_config(config), data)
  log.info("tune: %d training items as database, %d validation items as queries, "
           "chosen on validation %s%s", data.database_size, len(data.test), metric,
           f" (tune.metric={named!r})" if named != metric else "")
  records, chosen, cands, cost = [], {}, {}, {}
  for method in config.methods:
    found = search_method(config, data, method, os.path.join(folder, method))
    cands[method] = space.candidates(config, method)
    cost[method] = found["cost"]
    full = max(r["epochs"] for r in found["records"])  # the last round's runs
    last = [dict(r, **{metric: r[f"val_{metric}"]}) for r in found["records"]
            if r["epochs"] == full]
    chosen[method] = selection.select(selection.seed_means(last, metric))
    records += found["records"]
  return Search(records, chosen, cands, cost, metric)


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
  config = metric_choice.with_metric(config, found.metric)  # the final sweep reports it too
  written = write_search(config, found, folder)
  results.write_csv(os.path.join(folder, "candidates.csv"), candidate_rows(found))
  for m, cost in found.cost.items():
    log.info("tune %s: %d run-epochs of %d for full training of every candidate "
             "(%.0f%%), %.1fs", m, cost["run_epochs"], cost["full_run_epochs"],
             100 * cost["run_epochs"] / max(cost["full_run_epochs"], 1), cost["seconds"])
  # Only now is the test split read: the choice above is final.
  final = final_config(config, found)
  final_folder = os.path.join(folder, "final")
  workdir.prepare(final_folder, final.to_dict(), restart=restart_final,
                  runtime=experiment.runtime(final))
  sweep = experiment.run_sweep(final, dataset, workdir=final_folder)
  written += experiment.write_outputs(final_folder, sweep)
  results.write_csv(os.path.join(folder, "candidates.csv"),
                    candidate_rows(found, sweep.rows))
  log.info("tune wrote %s", ", ".join(os.path.relpath(p, folder) for p in written))
  return found, sweep
