"""The typed data specs: they match the config files' data blocks, refuse bad
counts, sizes, fractions and seeds in one line, and load what the loaders
load from a config block."""

import dataclasses
import re

import numpy as np
import pytest
import scipy.sparse

from configs import cifar, digits, newsgroups, snippets, svmlight, synthetic, table, tmc
from hashvae import data
from hashvae.data import DataError, small

# (config module, its argument, the spec type its data block must build).
CONFIGS = [
    (digits, None, data.DigitsSpec),
    (snippets, None, data.SnippetsSpec),
    (newsgroups, None, data.NewsgroupsSpec),
    (newsgroups, "source=mat", data.VdshMatSpec),
    (tmc, None, data.VdshMatSpec),
    (cifar, None, data.FeaturesNpySpec),
    (synthetic, None, data.SyntheticSpec),
    (svmlight, None, data.SvmlightSpec),
    (table, None, data.TextTableSpec),
]


@pytest.mark.parametrize("module,arg,spec_type", CONFIGS,
                         ids=[f"{m.__name__}:{a or ''}" for m, a, _ in CONFIGS])
def test_each_config_block_builds_its_spec_with_equal_fields(module, arg, spec_type):
  block = module.get_config(arg).data.to_dict()
  spec = data.spec_from_fields(block)
  assert type(spec) is spec_type and spec.name == block["name"]
  assert dataclasses.asdict(spec) == {k: v for k, v in block.items() if k != "name"}
  if spec_type is not data.VdshMatSpec:  # its two configs name two files: no default
    assert spec == spec_type()  # the defaults are the config file's values


def test_every_dataset_has_a_config_and_a_loader():
  assert {t.name for _, _, t in CONFIGS} == set(data.SPECS) == set(data.LOADERS)


# Fields refused at 0 and -1, refused at -1 only (0 means something), and
# fractions; every split_seed is refused at -1.
COUNTS = {
    data.SyntheticSpec: ("num_classes", "dims", "train_size", "validation_size", "test_size",
                         "doc_length"),
    data.SnippetsSpec: ("max_features",),
    data.NewsgroupsSpec: ("max_features",),
    data.TextTableSpec: ("max_features",),
    data.FeaturesNpySpec: ("queries_per_class",),
}
ZERO_MEANS_AUTO = {data.SvmlightSpec: ("n_features",)}
FRACTIONS = {  # (field, largest allowed value)
    data.SnippetsSpec: (("validation_fraction", 0.9),),
    data.NewsgroupsSpec: (("validation_fraction", 0.9),),
    data.SvmlightSpec: (("validation_fraction", 0.9),),
    data.TextTableSpec: (("validation_fraction", 0.9),),
    data.SyntheticSpec: (("noise", 1.0),),
}


def refused(spec_type, field, value):
  """Asserts spec_type(field=value) fails in one line naming the field."""
  with pytest.raises(DataError, match=rf"config\.data\.{field}={re.escape(repr(value))}: ") as e:
    spec_type(**{field: value})
  assert "\n" not in str(e.value)


def test_every_integer_field_is_checked():
  """A new int field must join a table above (so it is checked and tested)."""
  for spec_type in data.SPECS.values():
    ints = {f.name for f in dataclasses.fields(spec_type) if f.type == "int"}
    listed = set(COUNTS.get(spec_type, ())) | set(ZERO_MEANS_AUTO.get(spec_type, ()))
    assert ints - {"split_seed"} == listed, spec_type.__name__


def test_counts_sizes_and_seeds_below_their_minimum_are_refused():
  for spec_type, fields in COUNTS.items():
    for field in fields:
      for value in (0, -1, 2.5, "10"):
        refused(spec_type, field, value)
  for spec_type, fields in ZERO_MEANS_AUTO.items():
    for field in fields:
      refused(spec_type, field, -1)
      assert getattr(spec_type(**{field: 0}), field) == 0
  for spec_type in data.SPECS.values():
    if "split_seed" in {f.name for f in dataclasses.fields(spec_type)}:
      refused(spec_type, "split_seed", -1)
  refused(data.SyntheticSpec, "num_classes", 1)  # one class: every item relevant
  refused(data.DigitsSpec, "split_seed", 2**32)  # beyond scikit-learn's seeds


def test_fractions_outside_their_range_are_refused():
  for spec_type, fields in FRACTIONS.items():
    for field, top in fields:
      for value in (-1, -0.1, 1.5, float("nan")):
        refused(spec_type, field, value)
      if top < 1:
        refused(spec_type, field, 1.0)
      for value in (0.0, top):
        assert getattr(spec_type(**{field: value}), field) == value


def test_choices_and_flags_are_refused_in_one_line():
  refused(data.SvmlightSpec, "zero_based", "maybe")
  refused(data.TextTableSpec, "format", "xml")
  refused(data.TextTableSpec, "tfidf", "yes")
  assert data.SvmlightSpec(zero_based="true").zero_based == "true"  # the command line's text


def test_unknown_names_fields_and_missing_fields_are_named():
  with pytest.raises(DataError, match=r"unknown dataset 'mnist'; known: \[.*'digits'"):
    data.spec_from_fields({"name": "mnist"})
  with pytest.raises(DataError, match=r"unknown dataset None"):
    data.spec_from_fields({"split_seed": 0})
  with pytest.raises(DataError, match=r"digits: config\.data\.max_features is not a field "
                                      r"of this dataset; its fields: \['split_seed', 'path'\]"):
    data.spec_from_fields({"name": "digits", "max_features": 10})
  with pytest.raises(DataError, match=r"vdsh_mat: config\.data\.path must be set; its "
                                      r"fields: \['path'\]"):
    data.spec_from_fields({"name": "vdsh_mat"})
  with pytest.raises(DataError, match=r"synthetic: config\.data\.train_size=0: an integer"):
    data.spec_from_fields({"name": "synthetic", "train_size": 0})


def test_load_refuses_a_config_block():
  with pytest.raises(TypeError, match=r"spec_from_fields\(config\.data\.to_dict\(\)\)"):
    data.load(synthetic.get_config().data)


def same_split(a, b):
  for field in ("inputs", "targets", "labels"):
    x, y = getattr(a, field), getattr(b, field)
    assert scipy.sparse.issparse(x) == scipy.sparse.issparse(y)
    if scipy.sparse.issparse(x):
      assert x.shape == y.shape
      pairs = [(x.data, y.data), (x.indices, y.indices), (x.indptr, y.indptr)]
    else:
      pairs = [(x, y)]
    for p, q in pairs:
      assert p.dtype == q.dtype
      np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("module,loader,by_hand", [
    (digits, small.load_digits, data.DigitsSpec(split_seed=0)),
    (synthetic, small.load_synthetic, data.SyntheticSpec(
        num_classes=4, dims=50, train_size=160, validation_size=40, test_size=40,
        doc_length=30, noise=0.3, split_seed=0)),
], ids=["digits", "synthetic"])
def test_loading_through_a_spec_gives_the_same_arrays(module, loader, by_hand):
  block = module.get_config().data
  # The loader read the config block itself before specs existed; its
  # attribute reads still work on that block, so this is the old path.
  before = loader(block)
  for spec in (data.spec_from_fields(block.to_dict()), by_hand):
    loaded = data.load(spec)
    assert loaded.num_classes == before.num_classes
    assert loaded.class_names == before.class_names
    for split in ("train", "validation", "test"):
      same_split(getattr(loaded, split), getattr(before, split))
