"""What a run tells its user about the data before training: one line.

The line names the splits' sizes, the classes, single- or multi-label, where
the validation items come from, and on multi-label data which loss path
runs (config.loss.multilabel) and how to select the other one, so that a
result is never read without knowing what produced it.
"""

from __future__ import annotations

import numpy as np

from hashvae import methods
from hashvae.data.dataset import Dataset
from hashvae.sweep import config_check

# What each value of loss.multilabel runs, and the override selecting the other.
MULTILABEL_PATHS = {
    "softmax": ("the single-label softmax path on multi-hot labels, as released "
                "(paper parity); --config.loss.multilabel=sigmoid selects binary "
                "cross-entropy"),
    "sigmoid": ("binary cross-entropy per class, similarities in [0, 1]; "
                "--config.loss.multilabel=softmax is the paper-parity path"),
}


def validation_source(config, dataset: Dataset) -> str:
  """Where the validation split comes from (it matters to launch.tune only:
  a sweep's database is train and validation together)."""
  n, fields = len(dataset.validation), config.data
  if n == 0:
    return (f"no validation split (launch.tune holds out tune.validation_fraction="
            f"{config.tune.validation_fraction:g} of the training items)")
  if fields.get("validation_path"):
    return f"validation {n:,} items from data.validation_path"
  if "validation_fraction" in fields:
    return (f"validation {n:,} items, data.validation_fraction="
            f"{fields.validation_fraction:g} of the training items")
  return f"validation {n:,} items, the data's own split"


def label_kind(config, dataset: Dataset) -> str:
  """"single-label", or "multi-label (L labels an item)" with the loss path
  that runs (config.loss.multilabel) when a method of the run reads it."""
  if not dataset.multilabel:
    return "single-label"
  per_item = float(np.asarray(dataset.database_labels, np.float64).sum(1).mean())
  text = f"multi-label ({per_item:.2f} labels an item)"
  readers = [m for m in config.methods
             if m in methods.METHODS and "multilabel" in methods.get(m).options]
  if not readers:
    return text
  path = config.loss.multilabel
  return f"{text}; loss.multilabel={path!r}: {MULTILABEL_PATHS.get(path, path)}"


def data_line(config, dataset: Dataset, seconds: float) -> str:
  """The one line describing the loaded data (config: the run's)."""
  return (f"data {dataset.name}: {len(dataset.train):,} train + "
          f"{len(dataset.validation):,} validation items (the database), "
          f"{len(dataset.test):,} test queries, {dataset.dims:,} dims, "
          f"{dataset.num_classes} classes, {label_kind(config, dataset)}; "
          f"{validation_source(config, dataset)}; loaded in {seconds:.1f}s")


def dropped_ks_line(config, database_size: int) -> str:
  """The warning for the cut-offs of config.ks beyond the database, which
  the sweep drops (config_check.usable_ks); '' when none is."""
  kept = config_check.usable_ks(config, database_size)
  dropped = tuple(int(k) for k in config.ks if int(k) not in kept)
  if not dropped:
    return ""
  return (f"config.ks={tuple(config.ks)!r}: dropped {', '.join(map(str, dropped))}, "
          f"beyond the database size ({database_size:,} items); scoring at K in {kept}")
