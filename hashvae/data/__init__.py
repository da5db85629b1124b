"""Datasets by name: a typed spec per dataset, built from a config's data
block, and its loader. Host side only: numpy, scipy, scikit-learn.

    spec = data.spec_from_fields(config.data.to_dict())  # checks every field
    dataset = data.load(spec)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Union

from hashvae.data.arrays import FeaturesNpySpec, VdshMatSpec, load_features_npy, load_vdsh_mat
from hashvae.data.dataset import DataError, Dataset, Split
from hashvae.data.newsgroups import NewsgroupsSpec, load_newsgroups
from hashvae.data.small import DigitsSpec, SyntheticSpec, load_digits, load_synthetic
from hashvae.data.svmlight import SvmlightSpec, load_svmlight
from hashvae.data.table import TextTableSpec, load_text_table
from hashvae.data.text import SnippetsSpec, load_snippets

Spec = Union[DigitsSpec, SnippetsSpec, NewsgroupsSpec, VdshMatSpec, FeaturesNpySpec,
             SyntheticSpec, SvmlightSpec, TextTableSpec]

# Dataset name (config.data.name) -> (its spec type, its loader).
_DATASETS = {spec.name: (spec, loader) for spec, loader in (
    (DigitsSpec, load_digits),
    (SnippetsSpec, load_snippets),
    (NewsgroupsSpec, load_newsgroups),
    (VdshMatSpec, load_vdsh_mat),
    (FeaturesNpySpec, load_features_npy),
    (SyntheticSpec, load_synthetic),
    (SvmlightSpec, load_svmlight),
    (TextTableSpec, load_text_table),
)}
SPECS = {name: spec for name, (spec, _) in _DATASETS.items()}
LOADERS = {name: loader for name, (_, loader) in _DATASETS.items()}
_LOADER_OF_SPEC = {spec: loader for spec, loader in _DATASETS.values()}


def spec_from_fields(fields: Mapping[str, Any]) -> Spec:
  """The spec of a flat data block: `name` plus that dataset's fields (what
  `config.data.to_dict()` gives). Fields left out take the dataset's
  defaults (its config file's values); every value is checked.

  Raises DataError naming an unknown dataset, a field the dataset does not
  have or a required field left out, with the allowed names.
  """
  fields = dict(fields)
  name = fields.pop("name", None)
  if name not in SPECS:
    raise DataError(f"config.data.name: unknown dataset {name!r}; known: {sorted(SPECS)}")
  spec = SPECS[name]
  declared = [f.name for f in dataclasses.fields(spec)]
  unknown = sorted(set(fields) - set(declared))
  if unknown:
    raise DataError(f"{name}: config.data.{unknown[0]} is not a field of this dataset; "
                    f"its fields: {declared}")
  missing = [f.name for f in dataclasses.fields(spec) if f.name not in fields
             and f.default is dataclasses.MISSING]
  if missing:
    raise DataError(f"{name}: config.data.{missing[0]} must be set; its fields: {declared}")
  return spec(**fields)


def load(spec: Spec) -> Dataset:
  """Loads the dataset `spec` describes (a spec from `spec_from_fields`, or
  built directly, e.g. `SyntheticSpec(train_size=50)`)."""
  loader = _LOADER_OF_SPEC.get(type(spec))
  if loader is None:
    known = sorted(s.__name__ for s in _LOADER_OF_SPEC)
    raise TypeError(f"data.load takes a dataset spec (one of {known}), got "
                    f"{type(spec).__name__}: build it with "
                    "data.spec_from_fields(config.data.to_dict())")
  return loader(spec)


__all__ = ["DataError", "Dataset", "DigitsSpec", "FeaturesNpySpec", "LOADERS",
           "NewsgroupsSpec", "SPECS", "SnippetsSpec", "Spec", "Split", "SvmlightSpec",
           "SyntheticSpec", "TextTableSpec", "VdshMatSpec", "load", "spec_from_fields"]
