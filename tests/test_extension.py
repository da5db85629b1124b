"""A user-defined objective, in a file outside the package, trained through the
same entry point."""

import csv
import os
import subprocess
import sys
import textwrap

from conftest import ROOT

USER_MODULE = textwrap.dedent('''
    import jax.numpy as jnp
    from hashvae import losses, methods

    @methods.register("bvae_ce", latent="bernoulli")
    def bvae_ce(out, batch, hp, options):
      """Bernoulli VAE + alpha * pointwise cross-entropy, no pairwise term."""
      rec = jnp.mean(methods.reconstruction(out, batch, options))
      kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
      ce = methods.pointwise(out, batch, options)
      loss = rec + hp["beta"] * kl + hp["alpha"] * ce
      return loss, dict(loss=loss, reconstruction=rec, kl=kl, pointwise=ce)
''')


def test_user_method_from_outside_the_package(tmp_path):
  (tmp_path / "my_losses.py").write_text(USER_MODULE)
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  out = tmp_path / "run"
  proc = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/synthetic.py:method=bvae_ce",
       "--config.extra_modules=my_losses", "--config.weights.default.alpha=(2.0,)",
       f"--workdir={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  assert {r["method"] for r in rows} == {"bvae_ce"} and len(rows) == 4
  assert {r["alpha"] for r in rows} == {"2.0"}
  assert "bvae_ce: epoch 3/3" in proc.stderr
  # The pointwise term was trained: it is in the logged terms and not zero.
  last = [line for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
  assert '"pointwise"' in last and '"pairwise"' not in last


def test_missing_extension_module_is_named(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/synthetic.py:method=bvae_ce",
       "--config.extra_modules=no_such_module", f"--workdir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0
  assert "extra_modules: cannot import 'no_such_module'" in proc.stderr
