"""Each indexed item keeps its id from the user's data: a table's row number
or its id column's value, through the loader's splits into the index."""

import dataclasses
import json
import logging

import jax
import numpy as np
import pandas as pd
import pytest

from hashvae import data, methods
from hashvae.core import models
from hashvae.core.models import ModelSpec
from hashvae.retrieval import encoder as encoder_lib
from hashvae.retrieval import index
from hashvae.retrieval.encoder import Encoder

WORDS = ("football match goal team league score player coach stadium season",
         "doctor patient hospital medicine disease treatment nurse clinic virus",
         "software computer program code linux windows network server data")


class UntrainedSweep:
  """What index.build reads of an api.Sweep: a dataset and a network of
  `method` fresh from its initialiser (no training: fast), its variables
  passed through `change` when given, with codes of that network."""

  def __init__(self, dataset, path, bits=6, hidden=(8,), method="ssb_vae", change=None):
    spec = ModelSpec(dims=dataset.dims, bits=bits, num_classes=dataset.num_classes,
                     hidden=hidden)
    model = methods.get(method).build_model(spec)
    variables = model.init(jax.random.key(0), np.zeros((1, spec.dims), np.float32),
                           method="code_scores")
    self.dataset, self.path, self.method = dataset, path, method
    self._encoder = Encoder(method, spec, change(variables) if change else variables,
                            dataset.vectoriser)

  def row(self, run):
    return dict(method=self.method, seed=0, level=1.0)

  def encoder(self, run):
    return self._encoder

  def codes(self, run):
    return (self._encoder.encode(self.dataset.test.inputs),
            self._encoder.encode(self.dataset.database.inputs))


def table_index(folder, rows, id_column="id", name="train.csv", **fields):
  """An untrained index of a CSV table of `rows` (dicts), and its dataset."""
  pd.DataFrame(rows).to_csv(folder / name, index=False)
  pd.DataFrame(rows[:3]).to_csv(folder / "test.csv", index=False)
  spec = data.TextTableSpec(path=str(folder / name), test_path=str(folder / "test.csv"),
                            id_column=id_column, max_features=100, **fields)
  dataset = data.load(spec)
  path = str(folder / "table.hvi")
  index.build(UntrainedSweep(dataset, str(folder)), 0, path)
  return index.load(path), dataset


def table_rows(n, rng, **columns):
  """`n` rows of three topics: text, label and each of `columns` (a
  function of the row number)."""
  return [dict(text=" ".join(rng.choice(WORDS[i % 3].split(), 6)) + f" row{i}",
               label=f"topic{i % 3}", **{k: f(i) for k, f in columns.items()})
          for i in range(n)]


def test_ids_are_row_numbers_of_the_users_file(tmp_path):
  rows = table_rows(40, np.random.default_rng(1))
  loaded, dataset = table_index(tmp_path, rows)
  assert loaded.meta["ids"] == "row"
  positions = range(len(loaded.db_ids))
  assert sorted(int(loaded.item_id(p)) for p in positions) == list(range(40))
  assert sorted(dataset.test.ids) == [0, 1, 2]
  for p in positions:  # the shuffled validation split keeps each item's row
    assert loaded.db_texts[p] == rows[int(loaded.item_id(p))]["text"]


def test_ids_come_from_an_id_column(tmp_path):
  rows = table_rows(40, np.random.default_rng(2), id=lambda i: f"doc-{i * 7}")
  loaded, _ = table_index(tmp_path, rows)
  assert loaded.meta["ids"] == "column"
  by_id = {r["id"]: r["text"] for r in rows}
  assert {loaded.item_id(p) for p in range(40)} == set(by_id)
  for p in range(40):
    assert loaded.db_texts[p] == by_id[loaded.item_id(p)]
  numbered, _ = table_index(tmp_path, rows, id_column="")  # the column ignored
  assert numbered.meta["ids"] == "row"


def test_ids_of_a_validation_file_and_repeated_ids(tmp_path, caplog):
  rows = table_rows(30, np.random.default_rng(3))
  pd.DataFrame(rows[:6]).to_csv(tmp_path / "val.csv", index=False)
  loaded, _ = table_index(tmp_path, rows, validation_path=str(tmp_path / "val.csv"))
  assert {loaded.item_id(p) for p in range(30, 36)} == {f"val.csv:{i}" for i in range(6)}
  twice = table_rows(8, np.random.default_rng(4), id=lambda i: f"a{min(i, 5)}")
  with caplog.at_level(logging.WARNING, "hashvae"):
    loaded, _ = table_index(tmp_path, twice)  # loads, as before there were ids
  assert "train.csv:8: the id 'a5' repeats that of line 7" in caplog.text
  assert sorted(loaded.item_id(p) for p in range(8)) == sorted(r["id"] for r in twice)


def test_json_lines_ids_survive_dropped_documents(tmp_path, caplog):
  rows = table_rows(30, np.random.default_rng(5), id=lambda i: 1000 + i)
  for i in (4, 11):
    rows[i]["text"] = "the of and"  # stop words only: no vocabulary term, dropped
  lines = [json.dumps(r) for r in rows]
  (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
  (tmp_path / "test.jsonl").write_text("\n".join(lines[:3]) + "\n")
  spec = data.TextTableSpec(path=str(tmp_path / "train.jsonl"), max_features=100,
                            test_path=str(tmp_path / "test.jsonl"), drop_empty=True)
  db = data.load(spec).database
  assert sorted(db.ids) == sorted(1000 + i for i in range(30) if i not in (4, 11))
  for text, item in zip(db.texts, db.ids, strict=True):
    assert text == rows[item - 1000]["text"]
  rows[7]["id"] = None
  (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
  with caplog.at_level(logging.WARNING, "hashvae"):
    db = data.load(spec).database
  assert "train.jsonl:8: no usable id in 'id' (None): the items of this file" in caplog.text
  assert sorted(db.ids) == [i for i in range(30) if i not in (4, 11)]


def test_an_index_of_non_text_data_is_searched_by_item(tmp_path):
  dataset = data.load(data.SyntheticSpec(num_classes=3, dims=20, train_size=30,
                                         validation_size=6, test_size=6, doc_length=8,
                                         noise=0.3, split_seed=0))
  path = str(tmp_path / "synthetic.hvi")
  index.build(UntrainedSweep(dataset, str(tmp_path)), 0, path)
  loaded = index.load(path)
  assert loaded.meta["ids"] == "position" and loaded.db_texts == ()
  assert loaded.vectoriser is None and loaded.first_line(3) == ""
  positions, distances = loaded.search(loaded.db_codes[[3]], 36)
  assert distances[0, 0] == 0 and 3 in positions[0, :np.sum(distances[0] == 0)]
  with pytest.raises(ValueError, match="not built from text"):
    loaded.encode_texts(["anything"])


class FlippedModel(models.SpecModule):
  """The study's encoder and head, but code scores of the opposite sign: a
  network the index's numpy encoder does not compute."""

  def setup(self):
    self.encoder = models.Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.logits_head = models.Dense(self.bits)

  def code_scores(self, x, train: bool = False):
    return -self.logits_head(self.encoder(x, train))


def test_a_network_the_numpy_encoder_does_not_compute_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(encoder_lib, "build_model",
                      lambda method, spec: FlippedModel(**dataclasses.asdict(spec)))
  rows = table_rows(20, np.random.default_rng(6))
  with pytest.raises(index.NotIndexableError, match="not the encoder MLP and a chain of dense "
                     r"heads.*none of the activations"):
    table_index(tmp_path, rows)
