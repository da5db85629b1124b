import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
sys.path.insert(0, ROOT)


def shared_file(*parts):
  """Path under ../shared/data, or skip the test with the reason."""
  path = os.path.join(SHARED_DATA, *parts)
  if not os.path.exists(path):
    pytest.skip(f"real data not available: {path} is missing")
  return path


def with_fields(config, **fields):
  """A copy of `config` with fields set; `a__b=v` sets config.a.b = v."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    for dotted, value in fields.items():
      node = config
      *parents, leaf = dotted.split("__")
      for p in parents:
        node = node[p]
      node[leaf] = value
  return config


def pytest_addoption(parser):
  parser.addoption("--slow", action="store_true",
                   help="also run tests marked slow (minutes each)")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: minutes long; run with --slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--slow"):
    return
  skip = pytest.mark.skip(reason="slow: run with --slow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
