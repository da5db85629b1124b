"""Consistency checks of a hash index's arrays, so that a damaged or hand-made
index file is refused with what is wrong instead of answering with what it
has (code rows fewer than ids) or failing inside the encoder (a weight of
another shape). hashvae.retrieval.index raises IndexFormatError with these problems.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

# Arrays every index file holds (text indexes also `vocabulary`).
REQUIRED = ("meta", "db_codes", "db_ids", "db_labels", "db_texts")


def missing_arrays(files) -> list[str]:
  """The REQUIRED names absent from an index file's arrays."""
  return [name for name in REQUIRED if name not in files]


def length_problems(db_codes, db_ids, db_labels, db_texts, bits: int,
                    packed: bool = False) -> list[str]:
  """The database arrays must have one row per item; the codes `bits` wide
  (ceil(bits / 8) bytes when `packed`)."""
  problems = []
  items = len(db_ids)
  rows = dict(db_codes=len(db_codes), db_labels=len(db_labels))
  if len(db_texts):  # non-text indexes hold no texts
    rows["db_texts"] = len(db_texts)
  for name, count in rows.items():
    if count != items:
      problems.append(f"{name} has {count} rows for {items} ids (db_ids)")
  width = -(-bits // 8) if packed else bits
  if np.ndim(db_codes) != 2 or np.shape(db_codes)[1] != width:
    problems.append(f"db_codes has shape {np.shape(db_codes)}; a {bits}-bit code "
                    f"needs {width} {'bytes' if packed else 'columns'} per row")
  if len(set(np.asarray(db_ids).tolist())) != items:
    problems.append("db_ids repeats ids")
  return problems


def variable_problems(model, variables: dict, dims: int) -> list[str]:
  """The encoder's variables (those `model.code_scores` reads) must all be
  present, each of the shape `model` gives it for `dims` inputs."""
  x = jnp.zeros((1, dims), jnp.float32)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), x, method="code_scores"))
  have = traverse_util.flatten_dict(variables, sep="/")
  problems = []
  for name, shape in traverse_util.flatten_dict(dict(expected), sep="/").items():
    if name not in have:
      problems.append(f"the weight {name} is missing")
    elif tuple(np.shape(have[name])) != tuple(shape.shape):
      problems.append(f"the weight {name} has shape {tuple(np.shape(have[name]))}, "
                      f"the model needs {tuple(shape.shape)}")
  return problems


def vocabulary_problems(vocabulary_size: int, dims: int) -> list[str]:
  if vocabulary_size != dims:
    return [f"the vocabulary has {vocabulary_size} terms for an encoder of {dims} inputs"]
  return []


def loaded_index_problems(index) -> list[str]:
  """Every problem of a loaded hashvae.retrieval.index.Index (unpacked codes)."""
  encoder = index.encoder
  problems = length_problems(index.db_codes, index.db_ids, index.db_labels,
                             index.db_texts, encoder.spec.bits)
  problems += variable_problems(encoder.model, encoder.variables, encoder.spec.dims)
  if encoder.vectoriser is not None:
    problems += vocabulary_problems(len(encoder.vectoriser.counter.vocabulary),
                                    encoder.spec.dims)
  return problems
