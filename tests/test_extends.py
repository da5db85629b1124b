"""Methods that extend methods: a config gives PL-Hash, IM-Hash and CV-Hash
SSB-VAE's weights for the weights they share, and their own defaults for
their extra term."""

import csv

import pytest

from configs import base, snippets, synthetic
from hashvae import methods
from hashvae.sweep import config_check
from hashvae.tuning import tune_space

EXTRA = {"pl_hash": "lam", "im_hash": "delta", "cv_hash": "kappa"}


def released_column(dataset, bits, method, weight):
  """The released CSV's values of one weight, levels 0.1 .. 1.0, read directly."""
  with open(base.RELEASED_CSV, newline="") as f:
    rows = [r for r in csv.DictReader(f)
            if (r["dataset"], r["bits"], r["method"]) == (dataset, str(bits), method)]
  return [float(r[weight]) for r in sorted(rows, key=lambda r: float(r["p"]))]


def table(config, method):
  """{weight: value per config level}: what a sweep's grid is built from."""
  return config_check.weight_table(config, methods.get(method))


def write_rows(path, rows, weights=("alpha", "beta", "gamma")):
  """A weights CSV: rows (method, p, *values) for snippets at 16 bits."""
  with open(path, "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(("dataset", "bits", "method", "p") + tuple(weights))
    for method, p, *values in rows:
      out.writerow(("snippets", 16, method, p, *values))


SSB_ONLY = [("ssb_vae", 0.1, 2.0, 0.5, 30.0), ("ssb_vae", 1.0, 4.0, 0.25, 60.0)]


def test_the_three_own_methods_extend_ssb_vae_and_share_its_weights():
  for name in EXTRA:
    assert methods.get(name).extends == "ssb_vae"
    assert methods.shared_weights(name) == ("alpha", "beta", "gamma")
  assert methods.get("ssb_vae").extends is None and methods.shared_weights("ssb_vae") == ()


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_snippets_config_gives_the_base_released_rows_and_own_default(name):
  config = snippets.get_config(f"method=ssb_vae+{name}")
  config_check.check(config)
  got = table(config, name)
  for k in ("alpha", "beta", "gamma"):
    assert list(got[k]) == released_column("snippets", 16, "ssb_vae", k), k
  assert list(got[EXTRA[name]]) == [1.0] * 10
  # Alone, too (ssb_vae need not be trained beside it).
  alone = table(snippets.get_config(f"method={name},bits=32"), name)
  assert list(alone["alpha"]) == released_column("snippets", 32, "ssb_vae", "alpha")


def test_a_config_with_its_own_weights_passes_them_on():
  config = synthetic.get_config("method=ssb_vae+cv_hash")
  got = table(config, "cv_hash")
  assert got == dict(table(config, "ssb_vae"), kappa=(1.0, 1.0))
  assert got["alpha"] == (0.01, 0.01)  # synthetic.py's ssb_vae, not cv_hash's default 1


def test_a_weights_file_with_base_rows_only_gives_them_to_the_extension(tmp_path):
  path = tmp_path / "weights.csv"
  write_rows(path, SSB_ONLY)
  config = snippets.get_config(f"method=ssb_vae+cv_hash,grid={path}")
  config_check.check(config)
  assert config.levels == (0.1, 1.0)
  got = table(config, "cv_hash")
  assert (got["alpha"], got["beta"], got["gamma"]) == ((2.0, 4.0), (0.5, 0.25), (30.0, 60.0))
  assert got["kappa"] == (1.0, 1.0)
  # The released CSV as a grid: the same as the config's released weights.
  released = snippets.get_config(f"method=cv_hash,grid={base.RELEASED_CSV}")
  assert table(released, "cv_hash") == table(snippets.get_config("method=cv_hash"), "cv_hash")


def test_a_weights_file_with_own_rows_keeps_them(tmp_path):
  path = tmp_path / "weights.csv"
  own = [("cv_hash", 0.1, 7.0, 0.125, 3.0, 0.5), ("cv_hash", 1.0, 8.0, 0.125, 5.0, 2.0)]
  write_rows(path, [r + ("",) for r in SSB_ONLY] + own, ("alpha", "beta", "gamma", "kappa"))
  got = table(snippets.get_config(f"method=cv_hash,grid={path}"), "cv_hash")
  assert got == dict(alpha=(7.0, 8.0), beta=(0.125, 0.125), gamma=(3.0, 5.0), kappa=(0.5, 2.0))


def test_a_weights_file_with_neither_method_nor_base_fails_naming_it(tmp_path):
  path = tmp_path / "weights.csv"
  write_rows(path, [("phs_gs", 0.1, 1.0, 1.0, 1.0)])
  with pytest.raises(ValueError, match=r"no weights for dataset='snippets', bits=16, "
                     r"methods \['cv_hash'\] \(nor for a method they extend"):
    snippets.get_config(f"method=phs_gs+cv_hash,grid={path}")


def test_the_tune_config_candidates_are_the_base_rows():
  config = snippets.get_config("method=ssb_vae+cv_hash")
  config.tune.levels = (0.1, 0.5, 1.0)
  mine = [c for c in tune_space.candidates(config, "cv_hash") if c.source == "config"]
  base_ = [c for c in tune_space.candidates(config, "ssb_vae") if c.source == "config"]
  assert mine[0].index == 0 and len(mine) == len(base_) == 3  # three distinct settings
  first = {k: released_column("snippets", 16, "ssb_vae", k)[0] for k in ("alpha", "beta", "gamma")}
  assert mine[0].values == {**{k: (v,) * 3 for k, v in first.items()}, "kappa": (1.0,) * 3}
  for c, b in zip(mine, base_, strict=True):
    assert c.own_levels == b.own_levels
    assert {k: v for k, v in c.values.items() if k != "kappa"} == b.values


def test_extending_a_method_that_extends_a_study_method():
  methods.register("test_cv_more", weights=dict(alpha=3.0, kappa=5.0, rho=0.5),
                   extends="cv_hash")(lambda out, batch, hp, options: None)
  try:
    assert methods.shared_weights("test_cv_more") == ("alpha", "kappa")
    got = table(snippets.get_config("method=test_cv_more"), "test_cv_more")
    assert list(got["alpha"]) == released_column("snippets", 16, "ssb_vae", "alpha")
    assert got["kappa"] == (1.0,) * 10 and got["rho"] == (0.5,) * 10
  finally:
    del methods.METHODS["test_cv_more"]


def test_an_unknown_base_or_a_cycle_fails_in_one_line():
  objective = lambda out, batch, hp, options: None
  with pytest.raises(methods.MethodError, match=r"^method 'test_x': extends='nope', which "
                     r"is not registered \(register the base first\); known: \[") as e:
    methods.register("test_x", weights=dict(beta=1.0), extends="nope")
  assert "\n" not in str(e.value)
  methods.register("test_a", weights=dict(beta=1.0), extends="ssb_vae")(objective)
  methods.register("test_b", weights=dict(beta=1.0), extends="test_a")(objective)
  try:
    with pytest.raises(methods.MethodError, match=r"^method 'test_a': extends='test_b' makes "
                       r"a cycle \(test_a -> test_b -> test_a\)$"):
      methods.register("test_a", weights=dict(beta=1.0), extends="test_b")
    with pytest.raises(methods.MethodError, match=r"extends='test_a' makes a cycle"):
      methods.register("test_a", weights=dict(beta=1.0), extends="test_a")
    assert methods.get("test_a").extends == "ssb_vae"  # a refused one leaves it as it was
  finally:
    del methods.METHODS["test_b"], methods.METHODS["test_a"]
