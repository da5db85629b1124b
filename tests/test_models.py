"""Layers that replace Dense (nn.Dense with the released initialisers) must
be Dense up to float rounding."""

import jax
import jax.numpy as jnp
import numpy as np

from hashvae.core.models import Dense, WideDense


def test_wide_dense_has_dense_parameters_outputs_and_gradients():
  x = jax.random.uniform(jax.random.key(0), (5, 3, 16))
  key = jax.random.key(1)
  wide, dense = WideDense(40), Dense(40)
  params = wide.init(key, x)
  assert jax.tree.structure(params) == jax.tree.structure(dense.init(key, x))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(dense.init(key, x)),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  # A nonzero bias, so that its gradient and its share of the output count.
  params = jax.tree.map(lambda a: a + 0.1, params)
  np.testing.assert_allclose(wide.apply(params, x), dense.apply(params, x),
                             rtol=1e-5, atol=1e-6)
  loss = lambda module: lambda p: jnp.sum(jnp.sin(module.apply(p, x)))
  for a, b in zip(jax.tree.leaves(jax.grad(loss(wide))(params)),
                  jax.tree.leaves(jax.grad(loss(dense))(params)), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
