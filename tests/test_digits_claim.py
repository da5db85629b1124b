"""The study's central claim on the embedded default (digits, 16 bits, 3 seeds)."""

import numpy as np
import pytest

from configs import digits
from hashvae.store import results
from hashvae.sweep import experiment


@pytest.mark.slow
def test_ssb_vae_keeps_precision_where_phs_gs_loses_it():
  config = digits.get_config()
  with config.unlocked():
    config.levels = (0.1, 1.0)
  sweep = experiment.run_sweep(config)
  p = {(s["method"], round(s["level"], 2)): s["mean"]
       for s in results.summarise(sweep.rows, "p@100")}
  assert p[("ssb_vae", 0.1)] >= 0.78
  assert p[("phs_gs", 0.1)] <= p[("ssb_vae", 0.1)] - 0.15
  assert p[("ssb_vae", 1.0)] >= 0.88 and p[("phs_gs", 1.0)] >= 0.88
  assert p[("bernoulli_vae", 0.1)] <= p[("ssb_vae", 0.1)] - 0.15
  assert np.isfinite([r["p@100"] for r in sweep.rows]).all()
