"""The checks every dataset spec runs on its fields.

A spec is a frozen dataclass declared next to its loader, holding exactly
the fields of that dataset's `config.data` block. Its `__post_init__` calls
these helpers, so that a bad count, size, fraction or seed fails before any
file is read, in one line naming `config.data.<field>=<value>` and what is
allowed (not in a numpy traceback deep inside the loader).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from hashvae.data.dataset import DataError

# sklearn's random_state (train_test_split) takes seeds in [0, 2**32).
SKLEARN_SEED_MAX = 2**32 - 1


def refuse(spec, field: str, allowed: str):
  """Raises the one-line DataError for `spec.<field>`."""
  raise DataError(f"{spec.name}: config.data.{field}={getattr(spec, field)!r}: {allowed}")


def _integer(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _real(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_count(spec, field: str, minimum: int = 1, allowed: str = ""):
  """`spec.<field>` must be an integer >= `minimum` (a count or a size);
  `allowed` replaces the default description in the message."""
  value = getattr(spec, field)
  if not _integer(value) or value < minimum:
    refuse(spec, field, allowed or f"an integer >= {minimum}")


def check_seed(spec, field: str = "split_seed", maximum: int | None = None):
  """A seed: an integer >= 0, and at most `maximum` when given."""
  value = getattr(spec, field)
  if not _integer(value) or value < 0 or (maximum is not None and value > maximum):
    top = f" and <= {maximum}" if maximum is not None else ""
    refuse(spec, field, f"a seed, an integer >= 0{top}")


def check_fraction(spec, field: str, closed: bool = False, of: str = ""):
  """A number in [0, 1) (or [0, 1] when `closed`); `of` says of what."""
  value = getattr(spec, field)
  inside = _real(value) and 0 <= value and (value <= 1 if closed else value < 1)
  if not inside:  # NaN fails both comparisons
    refuse(spec, field, f"a fraction in [0, 1{']' if closed else ')'}{of}")


def check_flag(spec, field: str):
  if not isinstance(getattr(spec, field), (bool, np.bool_)):
    refuse(spec, field, "true or false")


def check_choice(spec, field: str, choices: Sequence, allowed: str):
  value = getattr(spec, field)
  if not isinstance(value, str) or value not in choices:
    refuse(spec, field, allowed)
