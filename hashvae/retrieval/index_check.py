"""Consistency checks of a hash index's arrays, so that a damaged or hand-made
index file is refused with what is wrong instead of answering with what it
has (code rows fewer than ids) or failing inside the encoder (a weight of
another shape). hashvae.retrieval.index raises IndexFormatError with these
problems. numpy only: a search imports no jax.
"""

from __future__ import annotations

import numpy as np

from hashvae.retrieval import numpy_encoder

# Arrays every index file holds ("meta" is its header; text indexes also
# hold the vocabulary, the texts' offsets and, with tf-idf, the idf).
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
  return problems


def offsets_problems(name: str, data, offsets) -> list[str]:
  """A string table's offsets must start at 0, never decrease and end at its
  data's length."""
  offsets = np.asarray(offsets)
  if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(data):
    return [f"{name}'s offsets do not span its {len(data)} bytes"]
  if (np.diff(offsets) < 0).any():
    return [f"{name}'s offsets decrease"]
  return []


def encoder_problems(arrays: dict, layout: dict, dims: int, bits: int) -> list[str]:
  """The encoder's arrays (numpy_encoder.array_names) must all be present,
  each of the shape an MLP of `layout`'s hidden layers from `dims` inputs,
  then its chain of heads to `bits` scores, gives it; each head's
  activation must be one the numpy encoder computes."""
  activations = numpy_encoder.layout_activations(layout)
  problem = numpy_encoder.activations_problem(activations)
  if problem:
    return [problem]
  problems, width = [], dims
  expected = {}
  layers = [(f"encoder/dense_{i}", True) for i in range(layout["layers"])]
  heads = numpy_encoder.head_names(len(activations))
  for j, (name, hidden) in enumerate(layers + [(h, False) for h in heads]):
    last = j == len(layers) + len(heads) - 1
    out = bits if last else arrays.get(f"{name}/bias", np.zeros(0)).shape[0]
    expected[f"{name}/kernel"] = (width, out)
    expected[f"{name}/bias"] = (out,)
    for part in numpy_encoder.BATCH_NORM if hidden and layout["batch_norm"] else ():
      expected[f"encoder/norm_{j}/{part}"] = (out,)
    width = out
  for name, shape in expected.items():
    if name not in arrays:
      problems.append(f"the weight {name} is missing")
    elif tuple(arrays[name].shape) != shape:
      problems.append(f"the weight {name} has shape {tuple(arrays[name].shape)}, "
                      f"the model needs {shape}")
  return problems


def vocabulary_problems(vocabulary_size: int, dims: int) -> list[str]:
  if vocabulary_size != dims:
    return [f"the vocabulary has {vocabulary_size} terms for an encoder of {dims} inputs"]
  return []


def loaded_index_problems(index) -> list[str]:
  """Every problem of a loaded hashvae.retrieval.index.Index."""
  a, meta = index.arrays, index.meta
  problems = length_problems(a["db_codes"], index.db_ids, a["db_labels"], index.db_texts,
                             meta["bits"], packed=True)
  for name in ("db_texts", "db_ids", "vocabulary"):
    if f"{name}_offsets" in a:
      problems += offsets_problems(name, a[name], a[f"{name}_offsets"])
  problems += encoder_problems(a, meta["encoder"], meta["dims"], meta["bits"])
  if index.vectoriser is not None:
    problems += vocabulary_problems(len(a["vocabulary_offsets"]) - 1, meta["dims"])
    if "idf" in a and a["idf"].shape != (meta["dims"],):
      problems.append(f"idf has shape {a['idf'].shape} for {meta['dims']} terms")
  return problems
