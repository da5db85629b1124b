"""A user's method, in a module outside the package, with a weight and an option
of its own, trained through the same entry point with no library edit."""

import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

USER_MODULE = textwrap.dedent('''
    import jax.numpy as jnp
    from hashvae.core import losses
    from hashvae import methods

    @methods.register("bvae_ce", weights=dict(beta=0.1, delta=1.0),
                      options=dict(ce_scale=1.0, reconstruction="softmax",
                                   multilabel="softmax"),
                      latent="bernoulli")
    def bvae_ce(out, batch, hp, options):
      """Bernoulli VAE + delta * ce_scale * pointwise cross-entropy."""
      rec = jnp.mean(methods.reconstruction(out, batch, options))
      kl = jnp.mean(losses.bernoulli_kl_uniform(out["logits"]))
      ce = methods.pointwise(out, batch, options)
      loss = rec + hp["beta"] * kl + hp["delta"] * options.ce_scale * ce
      # Logged so that the test sees which values reached the objective.
      return loss, dict(loss=loss, pointwise=ce, delta=hp["delta"],
                        ce_scale=jnp.float32(options.ce_scale))

    @methods.register("reads_undeclared", weights=dict(beta=0.1))
    def reads_undeclared(out, batch, hp, options):
      return hp["delta"], {}
''')


def launch(tmp_path, config, *args):
  (tmp_path / "my_losses.py").write_text(USER_MODULE)
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  return subprocess.run(
      [sys.executable, "-m", "launch.main", config, "--config.extra_modules=my_losses",
       *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_user_method_with_its_own_weight_and_option(tmp_path):
  out = tmp_path / "run"
  proc = launch(tmp_path, "--config=configs/synthetic.py:method=bvae_ce",
                "--config.weights.bvae_ce.delta=(0.1,1.0)", "--config.loss.ce_scale=2.5",
                f"--workdir={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "results.csv") as f:
    rows = list(csv.DictReader(f))
  # levels (0.2, 1.0) x seeds (0, 1): delta per level, its own column.
  assert [(r["level"], r["delta"]) for r in rows] == [
      ("0.2", "0.1"), ("0.2", "0.1"), ("1.0", "1.0"), ("1.0", "1.0")]
  assert {r["beta"] for r in rows} == {"0.1"} and "alpha" not in rows[0]
  # One program for the four runs, and the values reached the objective.
  assert "bvae_ce: 4 runs in 1 chunk(s)" in proc.stderr
  last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
  assert last["delta"]["runs"] == pytest.approx([0.1, 0.1, 1.0, 1.0])  # float32
  assert last["ce_scale"]["runs"] == [2.5] * 4
  config = json.loads((out / "config.json").read_text())
  assert config["loss"] == {"ce_scale": 2.5, "multilabel": "softmax",
                            "reconstruction": "softmax"}


@pytest.mark.slow  # the default run stays under 10 minutes on 2 cores
def test_mistakes_in_a_user_method_are_one_line(tmp_path):
  proc = launch(tmp_path, "--config=configs/synthetic.py:method=bvae_ce",
                "--config.weights.bvae_ce.gamma=(1.0,)", f"--workdir={tmp_path / 'a'}")
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "config.weights.bvae_ce.gamma" in proc.stderr
  proc = launch(tmp_path, "--config=configs/synthetic.py:method=reads_undeclared",
                f"--workdir={tmp_path / 'b'}")
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "method 'reads_undeclared' reads weight 'delta', which it does not declare" \
      in proc.stderr


def test_missing_extension_module_is_named(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "launch.main", "--config=configs/synthetic.py:method=bvae_ce",
       "--config.extra_modules=no_such_module", f"--workdir={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode != 0
  assert "extra_modules: cannot import 'no_such_module'" in proc.stderr
