"""The label mask keeps exactly floor(p * N) labels, for a traced p."""

import math
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

from hashvae.core.label_mask import label_mask, labelled_count

LEVELS = [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]


def exact_floor(p, n):
  return math.floor(Fraction(str(p)) * n)


def test_count_is_exact_floor_for_decimal_levels():
  count = jax.jit(labelled_count, static_argnums=1)
  for n in (1, 7, 10, 100, 1437, 10060, 54000):
    for p in LEVELS:
      assert int(count(jnp.float32(p), n)) == exact_floor(p, n), (p, n)


def test_mask_draws_exact_counts_under_one_trace():
  traces = []

  def draw(key, p):
    traces.append(1)
    return label_mask(key, p, (1437,))

  draw = jax.jit(draw)
  for i, p in enumerate(LEVELS):
    mask = np.asarray(draw(jax.random.key(i), jnp.float32(p)))
    assert mask.sum() == exact_floor(p, 1437)
    assert set(np.unique(mask)) <= {0.0, 1.0}
  assert len(traces) == 1


def test_mask_per_segment_and_vmapped():
  keys = jax.random.split(jax.random.key(0), 4)
  levels = jnp.array([0.1, 0.5, 0.7, 1.0])
  masks = np.asarray(jax.vmap(lambda k, p: label_mask(k, p, (90, 10)))(keys, levels))
  for m, p in zip(masks, [0.1, 0.5, 0.7, 1.0], strict=False):
    assert m[:90].sum() == exact_floor(p, 90)
    assert m[90:].sum() == exact_floor(p, 10)


def test_different_keys_draw_different_items():
  a = label_mask(jax.random.key(0), 0.5, (200,))
  b = label_mask(jax.random.key(1), 0.5, (200,))
  assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_one_key_draws_nested_masks_across_levels():
  # A run's key comes from its seed alone (README, label mask): the items
  # labelled at a level stay labelled at every higher one.
  key = jax.random.key(3)
  masks = [np.asarray(label_mask(key, p, (180, 20))) for p in LEVELS]
  for lower, higher in zip(masks[:-1], masks[1:], strict=True):
    assert np.all(higher >= lower)
  assert masks[-1].sum() == 200 and masks[0].sum() == 0
