"""Which validation metric a search maximises: tune.metric as named, or,
with "auto", p@K with K fitted to the corpus (host side, no training).

p@K scores the K first items a query retrieves. It tells codes apart
while a perfect code could fill those K ranks with relevant items: in a
database of 1,800 documents in 10 classes a query has about 180 relevant
items, and "auto" takes p@50; in one of 160 in 4 classes, p@100 would
take most of the database and every code would score near the class
prior, so "auto" takes p@10 (docs/tuning.md, "Which metric a small corpus
is searched on").
"""

from __future__ import annotations

import re

import numpy as np

from hashvae.data.dataset import Dataset
from hashvae.sweep.config_check import ConfigError

# tune.metric: "auto" picks p@K for the corpus (choose_metric), else one of
# evaluate's cut-off metrics with K in config.ks.
AUTO = "auto"
METRIC = r"(p|r|map|ndcg)@(\d+)(_tie_aware)?"
MAX_AUTO_K = 100  # the study's p@100 wherever the corpus allows it


def adaptive_k(relevant: float, largest: int = MAX_AUTO_K) -> int:
  """The K of tune.metric="auto": at most half the mean number of items
  relevant to a validation query in the search's database (so that a
  perfect code could fill the first K ranks even for a class of half the
  mean size), rounded down to 1, 2 or 5 times a power of ten (the same K
  for corpora of nearly the same size), and at most `largest`."""
  target = max(1.0, relevant / 2)
  ladder = [m * 10 ** e for e in range(7) for m in (1, 2, 5)]
  return min(largest, max(k for k in ladder if k <= target))


def mean_relevant(query_labels: np.ndarray, db_labels: np.ndarray, most: int = 2000) -> float:
  """Mean over (at most the first `most`) queries of the database items
  sharing a label with the query: [queries] / [items] class ids, or
  multi-hot [queries, classes] / [items, classes]."""
  q = np.asarray(query_labels)[:most]
  if q.ndim == 1:
    counts = np.bincount(np.asarray(db_labels), minlength=int(q.max(initial=0)) + 1)
    return float(counts[q].mean()) if len(q) else 0.0
  db = np.asarray(db_labels, np.float32)
  hits = [((q[i:i + 256].astype(np.float32) @ db.T) > 0).sum(1) for i in range(0, len(q), 256)]
  return float(np.concatenate(hits).mean()) if hits else 0.0


def choose_metric(config, data: Dataset) -> str:
  """The metric a search on `data` (search_dataset's view) maximises:
  config.tune.metric when named (ConfigError when its K exceeds the search's
  database), else "p@K" with K = adaptive_k of the validation queries'
  relevant items in the training split."""
  size = data.database_size
  if config.tune.metric != AUTO:
    k = int(re.fullmatch(METRIC, config.tune.metric).group(2))
    if k > size:
      raise ConfigError(f"config.tune.metric={config.tune.metric!r}: K={k} is more than "
                        f"the search's database (the training split, {size} items); use "
                        f"'{AUTO}' or a smaller K")
    return config.tune.metric
  k = adaptive_k(mean_relevant(data.test.labels, data.database_labels))
  return f"p@{min(k, size)}"


def with_metric(config, metric: str, database_size: int = 0):
  """`config` with tune.metric = `metric` (resolved) and its K among
  config.ks, so that every run is scored on it; with `database_size`, the
  cut-offs beyond it are left out (a search's database is smaller than a
  sweep's)."""
  k = int(re.fullmatch(METRIC, metric).group(2))
  c = config.copy_and_resolve_references()
  ks = {int(x) for x in config.ks if not database_size or x <= database_size}
  with c.unlocked():
    c.tune.metric = metric
    c.ks = tuple(sorted(ks | {k}))
  return c
