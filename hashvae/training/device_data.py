"""The dataset on the device, and how a step reads items of it.

Bag-of-words data (CSR on the host) stays CSR on the device (`CsrRows`,
memory that grows with the nonzeros); dense features are dense arrays. A
read gives the network dense rows, or a padded SparseRows on the sparse
input path (sparse.SparseInput).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hashvae.core.sparse import CsrRows, to_dense
from hashvae.data import Dataset


def device_arrays(data: Dataset, sparse: bool = False, db=None) -> dict:
  """The dataset as device arrays: training set (train + validation) and queries.

  inputs [items, dims] and query_inputs [queries, dims]: dense, or CsrRows
  for bag-of-words data or with `sparse`; targets: [items, dims] dense, or
  a [nnz] vector of values on the inputs' nonzeros for bag-of-words data;
  label_rows [items, classes] float32 (one-hot, or the label sets).
  `db`: the dataset's database (built from its splits when not given).
  """
  db = data.database if db is None else db
  labels = db.labels
  rows = (labels.astype(np.float32) if data.multilabel
          else np.eye(data.num_classes, dtype=np.float32)[labels])
  as_rows = CsrRows.from_host if (sparse or db.sparse) else jnp.asarray
  targets = db.targets.data if db.sparse else db.targets
  return dict(inputs=as_rows(db.inputs), targets=jnp.asarray(targets),
              label_rows=jnp.asarray(rows), query_inputs=as_rows(data.test.inputs))


def read_inputs(inputs, idx, dense: bool):
  """Items idx [...] of device inputs (dense, or CsrRows) as the network
  reads them: dense rows, or a padded SparseRows unless `dense`."""
  if not isinstance(inputs, CsrRows):
    return inputs[idx]
  x = inputs.take(idx)
  return to_dense(x, inputs.dims) if dense else x


def read_targets(arrays, idx, dense: bool):
  """Targets of items idx [batch]: dense rows, or a SparseRows on the
  inputs' nonzeros (densified with `dense`, as the inputs are)."""
  targets = arrays["targets"]
  if targets.ndim == 2:
    return targets[idx]
  rows = arrays["inputs"].take(idx, values=targets)
  return to_dense(rows, arrays["inputs"].dims) if dense else rows
