"""Dataset loaders by name. Host side only: numpy, scipy, scikit-learn."""

from hashvae.data.arrays import load_features_npy, load_vdsh_mat
from hashvae.data.dataset import DataError, Dataset, Split
from hashvae.data.newsgroups import load_newsgroups
from hashvae.data.small import load_digits, load_synthetic
from hashvae.data.svmlight import load_svmlight
from hashvae.data.table import load_text_table
from hashvae.data.text import load_snippets

LOADERS = {
    "digits": load_digits,
    "snippets": load_snippets,
    "newsgroups": load_newsgroups,
    "vdsh_mat": load_vdsh_mat,
    "features_npy": load_features_npy,
    "synthetic": load_synthetic,
    "svmlight": load_svmlight,
    "text_table": load_text_table,
}


def load(data_config) -> Dataset:
  """Loads the dataset named by `data_config.name` (a config.data block)."""
  if data_config.name not in LOADERS:
    raise ValueError(f"unknown dataset {data_config.name!r}; known: "
                     f"{sorted(LOADERS)}")
  return LOADERS[data_config.name](data_config)


__all__ = ["DataError", "Dataset", "LOADERS", "Split", "load"]
