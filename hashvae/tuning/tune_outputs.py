"""A weight search's outputs: candidates.csv, weights.csv, search.json, the
figure of the validation metric against each weight, and the comparison of
the chosen weights with the config's own."""

from __future__ import annotations

import logging
import math
import os
from typing import Optional

import numpy as np

from hashvae.store import results
from hashvae.tuning import selection
from hashvae.tuning import tune_space as space

log = logging.getLogger("hashvae")


def chosen_weights(config, found: space.Search) -> dict:
  """method -> {level: {weight: value}} of the selected candidates."""
  lv = space.levels(config)
  return {m: {level: {k: v[lv.index(level)]
                      for k, v in found.candidates[m][cand].values.items()}
              for level, cand in per_level.items()}
          for m, per_level in found.chosen.items()}


def write_search(config, found: space.Search, folder: str) -> list[str]:
  """weights.csv, search.json and the figure (candidates.csv comes with the
  test columns, after the final sweep)."""
  name = config.tune.dataset_name or config.data.name
  rows = [r for m, per_level in chosen_weights(config, found).items()
          for r in space.weight_rows(name, config.bits, m, per_level)]
  paths = [os.path.join(folder, "weights.csv"), os.path.join(folder, "search.json")]
  results.write_csv(paths[0], rows)
  audit, metric = halving_audit(config, found), searched_metric(config, found)
  results.write_json(paths[1], dict(
      metric=metric, chosen={m: {str(lv): c for lv, c in v.items()}
                             for m, v in found.chosen.items()},
      cost=found.cost, halving_audit=audit))
  if audit:
    paths.append(os.path.join(folder, "halving_audit.csv"))
    results.write_csv(paths[-1], audit)
    paths.append(os.path.join(folder, "halving_spread.csv"))
    results.write_csv(paths[-1], cut_spread(config, found))
  figure = os.path.join(folder, f"tune_{metric.replace('@', '_at_')}.png")
  try:
    validation_figure(found, metric, figure, space.levels(config))
    paths.append(figure)
  except ImportError as e:  # matplotlib is optional for the search itself
    log.warning("no figure: %s", e)
  return paths


def searched_metric(config, found: space.Search) -> str:
  """The metric the search chose on (tune.metric resolved for its data)."""
  return found.metric or space.metric_name(config)


def trained(found: space.Search) -> dict:
  """{method: its records} of the methods trained in epochs (not fitted)."""
  out = {}
  for r in found.records:
    out.setdefault(r["method"], []).append(r)
  return {m: recs for m, recs in out.items() if max(r["epochs"] for r in recs) > 0}


def cut_spread(config, found: space.Search) -> list[dict]:
  """halving_spread.csv (tune.audit_halving): per method, level and scored
  epoch, how well a cut there tells the candidates apart
  (selection.cut_spread)."""
  metric = searched_metric(config, found)
  return [dict(method=m, **row) for m, recs in trained(found).items()
          for row in selection.cut_spread(recs, metric, config.tune.halving_eta,
                                          config.tune.halving_keep_config)]


def halving_audit(config, found: space.Search) -> list[dict]:
  """halving_audit.csv (tune.audit_halving; else empty): per method, halving
  setting and level, halving's choice against full training's."""
  if not config.tune.audit_halving:
    return []
  metric, t = searched_metric(config, found), config.tune
  out = []
  for m, recs in trained(found).items():
    for row in selection.halving_audit(recs, metric, config.epochs, t.halving_rounds,
                                       t.halving_eta, t.halving_first_fraction,
                                       t.halving_keep_config):
      out.append(dict(method=m, **row))
      log.info("halving audit %s, %d round(s) at p=%g: keeps candidate %d, full training "
               "chooses %d (validation %s %.4f vs %.4f), %d of %d run-epochs", m,
               row["rounds"], row["level"], row["halving"], row["full"], metric,
               row["halving_val"], row["full_val"], row["run_epochs"], row["full_run_epochs"])
  return out


def candidate_rows(found: space.Search, final_rows: Optional[list] = None) -> list[dict]:
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


def validation_figure(found: space.Search, metric: str, path: str, levels: tuple):
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


def comparison(found: space.Search, metric: str) -> list[dict]:
  """Per (method, level): the selected candidate's validation mean and that
  of the config's own weights at that level (with tune.include_config),
  each at the last round it reached (config_epochs < epochs: halving
  stopped it early)."""
  out = []
  for m, per_level in found.chosen.items():
    recs = [dict(r, **{metric: r[f"val_{metric}"]}) for r in found.records
            if r["method"] == m]
    full = max(r["epochs"] for r in recs)
    for level, cand in sorted(per_level.items()):
      mean = lambda c, level=level, recs=recs: selection.seed_means(
          [r for r in recs if r["level"] == level and r["candidate"] == c], metric)
      own = next((c.index for c in found.candidates[m] if level in c.own_levels), -1)
      out.append(dict(method=m, level=level, candidate=cand, epochs=full,
                      chosen=mean(cand)[(level, cand)], config_candidate=own,
                      config=mean(own).get((level, own), math.nan),
                      config_epochs=max((r["epochs"] for r in recs if r["level"] == level
                                         and r["candidate"] == own), default=0)))
  return out
