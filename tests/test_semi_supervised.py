"""SSB-VAE's supervision on other methods (methods.semi_supervised): the
form's objective against the numpy SSB-VAE objective, its reduction to the
base, and the registered forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_methods import HP, batch, bernoulli_out, np_softmax, written_out

from configs import digits
from hashvae import methods
from hashvae.methods import semi_supervised
from hashvae.sweep import experiment

from conftest import with_fields


@pytest.fixture
def nash_form():
  """NASH (rec + beta KL on its network's outputs) with SSB's terms."""
  objective = semi_supervised.with_predicted_pairs("nash", "test_nash_ssb")
  yield objective
  del methods.METHODS["test_nash_ssb"]


def test_form_of_nash_is_the_ssb_vae_objective_by_hand(nash_form):
  out, b = bernoulli_out(), batch()
  options = methods.default_options("test_nash_ssb")
  loss, terms = nash_form(out, b, HP, options)
  p = np_softmax(out["class_logits"])
  np.testing.assert_allclose(loss, written_out(out, b, p @ p.T), rtol=1e-4)
  assert set(terms) >= {"loss", "reconstruction", "kl", "pointwise", "pairwise"}

  def pair_only(class_logits):  # S = P P^T carries the gradient, as in SSB-VAE
    return nash_form(dict(out, class_logits=class_logits), b, HP, options)[1]["pairwise"]
  assert float(jnp.abs(jax.grad(pair_only)(jnp.asarray(out["class_logits"]))).max()) > 0


def test_alpha_zero_is_the_base_exactly(nash_form):
  out, b = bernoulli_out(), batch()
  hp = dict(HP, alpha=jnp.float32(0.0))
  base, _ = methods.get("nash").objective(out, b, hp, methods.default_options("nash"))
  form, _ = nash_form(out, b, hp, methods.default_options("test_nash_ssb"))
  assert float(form) == float(base)


def test_form_declares_base_and_ssb_parts(nash_form):
  form, nash = methods.get("test_nash_ssb"), methods.get("nash")
  assert form.extends == "nash" and form.model is nash.model
  assert form.weights == dict(nash.weights, **semi_supervised.SSB_WEIGHTS)
  assert set(form.options) == set(nash.options) | set(semi_supervised.SSB_OPTIONS)
  with pytest.raises(methods.MethodError, match="shadow"):
    semi_supervised.with_predicted_pairs("ssb_vae", "test_ssb_twice")


@pytest.mark.parametrize("name", semi_supervised.FORMS)
def test_registered_forms_keep_their_base_network_and_neighbours(name):
  form = methods.get(name)
  base = methods.get(semi_supervised.FORMS[name])
  assert form.extends == base.name and form.neighbours == base.neighbours
  assert {"alpha", "gamma"} <= set(form.weights)


def gaussian_out():
  """Outputs of a Gaussian network with neighbours: NbrReg's and SNUH's keys."""
  out = bernoulli_out()
  return dict(out, neighbour_logits=out["recon_logits"][::-1], mu=jax.nn.sigmoid(out["logits"]),
              logvar=0.1 * out["logits"], scale=jnp.exp(0.05 * out["logits"]),
              correlation=0.3 * out["logits"], sample=3.0 * out["logits"],
              neighbour=dict(mu=jax.nn.sigmoid(out["logits"][::-1]),
                             scale=jnp.exp(0.05 * out["logits"][::-1]),
                             correlation=0.2 * out["logits"]))


@pytest.mark.parametrize("form,codes", [
    ("nbrreg_ssb", lambda out: jax.nn.sigmoid(out["sample"])),
    ("snuh_ssb", lambda out: out["mu"])])
def test_gaussian_forms_put_the_pair_term_on_codes_in_the_unit_interval(form, codes):
  out, b = gaussian_out(), batch()
  b = dict(b, neighbour_targets=b["targets"][::-1])
  hp = dict(HP, neighbour=jnp.float32(0.5), edge=jnp.float32(0.7))
  base_name = semi_supervised.FORMS[form]
  got, _ = methods.get(form).objective(out, b, hp, methods.default_options(form))
  base, _ = methods.get(base_name).objective(out, b, hp, methods.default_options(base_name))
  # The supervised part by hand: written_out of NASH's terms on the codes,
  # less those terms (checked against numpy elsewhere).
  as_bits = dict(out, sample=codes(out))
  p = np_softmax(out["class_logits"])
  nash_terms, _ = methods.get("nash").objective(as_bits, b, HP, methods.default_options("nash"))
  supervised = written_out(as_bits, b, p @ p.T) - float(nash_terms)
  np.testing.assert_allclose(float(got) - float(base), supervised, rtol=1e-4)


@pytest.mark.slow  # compiling a sweep takes several seconds per method on 2 cores
def test_forms_train_in_one_sweep_with_ssb_vae_on_digits():
  names = ["ssb_vae", *semi_supervised.FORMS]
  config = with_fields(digits.get_config("method=" + "+".join(names)), epochs=2,
                       seeds=(0,), levels=(0.1,), bits=8, ks=(10,), model__hidden=(32,))
  result = experiment.run_sweep(config)
  assert [r["method"] for r in result.rows] == names
  assert all(r["status"] == "ok" for r in result.rows)
  for i, name in list(enumerate(names))[1:]:
    assert len(np.unique(result.db_codes[i], axis=0)) > 1
    assert np.isfinite(result.epoch_metrics[name]["pairwise"]).all()
    assert result.rows[i]["p@10"] > 0.2  # 10 classes: chance is 0.1
