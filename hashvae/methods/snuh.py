"""SNUH (Ou, Su, Yu, Liu, Wang, Zhao, Chen, Zheng, "Integrating Semantics and
Neighborhood Information with Graph-Driven Generative Models for Document
Retrieval", ACL 2021).

The codes get a prior shaped by the documents' kNN graph G: a
tree-structured distribution whose every edge (i, j) couples the two
documents' latents, and a correlation encoder gives each edge's pair of
latents a joint posterior, so that the ELBO gains one term per edge. The
paper's latent is Gaussian (a graph-induced Gaussian prior), not
Bernoulli; as in its public code the means lie in (0, 1) and the code
thresholds them (h = the shared encoder's hidden vector):

    q(z | x)  = N(mu, diag(s^2)),  mu = sigmoid(l / T),  l = Dense(K)(h),
                s = softplus(Dense(K)(h))           (T: the run's temperature)
    z         = mu + s * eps,  eps ~ N(0, I)         (training)
    b         = 1[mu > 1/2] = 1[l > 0]               (test: the hash code)
    p(x | z)  = softmax(W z + c)                     (the study's decoder)
    q(z_i, z_j | x_i, x_j): per bit, the 2-d Gaussian with the two documents'
                means and scales and correlation gamma_ij = 2 sigmoid(a_ij) - 1
    p(z) over a tree T of G: prod_i N(z_i; 0, I) prod_(i,j) in T
                p(z_i, z_j) / (p(z_i) p(z_j)),  p(z_i, z_j) per bit the
                2-d N(0, [[1, tau], [tau, 1]]),  tau = PRIOR_CORRELATION

With a tree prior the KL of the whole corpus's posterior is a sum of node
and edge terms:

    KL = sum_i KL_i + sum_(i,j) in T D_ij,   D_ij = KL_ij - KL_i - KL_j

KL_i = KL(N(mu_i, s_i^2) || N(0, I)) (losses.gaussian_kl), KL_ij the KL of
the pair's 2-d posterior to the 2-d prior, summed over bits. Per bit,
with A = mu_i^2 + mu_j^2 + s_i^2 + s_j^2 and P = mu_i mu_j + gamma s_i s_j,

    D_ij = tau (tau A - 2 P) / (2 (1 - tau^2)) + log(1 - tau^2) / 2
           - log(1 - gamma^2) / 2                           (`edge_kl`)

D_ij = 0 where tau = 0 and gamma = 0 (independent pairs under an
independent prior), and the objective is then VDSH's. Written per
document (the corpus's ELBO over its N documents),

    snuh: L = mean_i[ rec_i + beta (KL_i + edge * D_(i, j_i)) ],
          j_i drawn uniformly from the k neighbours of i

The correlation encoder. The public one is a separate linear layer on the
two documents' concatenated inputs, averaged over both orders, so for its
default (no hidden layer) a_ij = W (x_i + x_j) + b: a function of the sum.
Here a_ij = c_i + c_j with c = Dense(K)(h) a head on the shared encoder (a
second input encoder would need its own first kernel, which the sparse
input path does not gather): symmetric in i and j as public, and the same
form as the public linear layer, but on the per-document hidden vectors
instead of the sum of inputs. The network runs once on each document (the
batch and its drawn neighbours stacked, methods.Neighbours(encode=True));
the objective pairs the rows.

From sampled trees to one drawn neighbour. The paper replaces the graph
by spanning trees sampled from it and averages the tree priors' ELBOs;
in expectation over the trees the edge terms are sum_(i,j) in G pi_ij D_ij,
pi_ij the edge's probability of being in a sampled tree. The trainer here
is one pure program per run, which draws one of its k neighbours per
batch item and step; the mean over the batch of D_(i, j_i) estimates
(1 / (N k)) sum over the N k (item, neighbour) pairs of D, without bias.
Multiplied by `edge` (edges per document of a tree), this is the
expected tree term per document when every edge of G has the same
inclusion probability. What differs from sampling trees:
- Every (item, neighbour) pair counts alike: pi_ij is replaced by its
  mean. A sampler's pi_ij varies by edge (for trees drawn uniformly
  among the spanning trees it is the edge's effective resistance: 1 for
  a bridge, small inside a dense cluster; for the public sampler below,
  the chance that i is a star's centre before j is taken); a mutual
  neighbour pair counts twice here (once from each side).
- edge = 1 by default: a spanning tree has N - 1 edges on N documents.
  The public sampler (below) gives forests with fewer edges per document
  (0.76 on Snippets' training graph, k = 10), which `edge` can set.
- A fresh edge per item and step, over the whole training run, not a
  fixed set of trees drawn once before training.
- The edge's endpoints are a batch item and its neighbour; the public code
  feeds the node terms and the edge terms from separate samples (edges
  cycle through a shuffled list independently of the batch).

Checked against the public code (J-zin/SNUH, model/SNUH.py, utils/data.py,
run.sh); where it and the paper differ from what is here:
- Trees: the public sampler walks from a random unvisited document, and
  since its walk never leaves that document it takes all of its unvisited
  neighbours as leaves: a forest of stars, each edge weighted by the
  fraction of the num_trees (default 10) forests holding it, drawn once.
  Its softmax over similarities (alpha) orders the leaves only. Here the
  uniform edge weight above.
- KL: the public node term is sum(mu^2 + s^2 - 1 - 2 log s), twice the KL
  (the edge term is not doubled); here the ELBO's KL. Its edge term has
  -log(1 - gamma) / 2 where the Gaussian KL has -log(1 - gamma^2) / 2;
  here the latter (`edge_kl` is checked against the 2-d Gaussian KL).
- tau = 0.99 as public (PRIOR_CORRELATION, a constant there too). The
  public (1 - 1e-8) factor on gamma is left out: log(1 - gamma^2) = log 4
  - softplus(a) - softplus(-a) stays finite for any a.
- beta: the public default is 0.05 (run.sh: 0.09 to 0.2 at 16 bits) on a
  reconstruction summed over the document's words (about 14 distinct
  words per Snippets document: about 1/280 per word); here the study's
  per-document reconstruction of normalised term frequencies
  (options.reconstruction; 'gaussian' for dense features). The study's
  Gaussian-VAE weight 1/8 (nbrreg's) collapsed on Snippets at 16 bits
  (every database code the same, test p@100 0.130, chance 0.125), so beta
  was chosen on Snippets' validation p@100 (validation items as queries
  against the training items, seed 0, 30 epochs) over 1/8192 .. 1/8: best
  at 1/512 (0.678, and 0.658 in a second run; 1/256 0.576, 1/1024
  0.653). The default is 1/512; docs/methods_text.md has every figure.
- Temperature: the public default T is 0.1 (run.sh: 0.3 to 0.8 at 16
  bits); here the run's traced temperature (config.temperature, 0.67). It
  scales the logits inside mu only; the code 1[l > 0] does not depend on
  it.
- Neighbours: the public code takes each training document's k most
  cosine-similar training documents on tf-idf (k = num_neighbors, default
  10; run.sh 7 to 11 at 16 bits); here k = 10 by cosine on tf-idf of term
  counts (data.neighbours 'tfidf'; cosine on dense features), within the
  training items (train then validation).
- Codes: 1[mu > 1/2] as the public default (its --median option, the
  median of each bit over the training codes, is not offered).
- Encoder: the study's (2 x 500 ReLU + batch norm), not the public single
  linear layer on tf-idf with U(-0.05, 0.05) initial weights; Adam at the
  config's learning rate without gradient clipping (public 1e-3, clipped
  at 10). The public decoder reads binarised word counts; the reconstruction
  here is the study's.
- The public script keeps the epoch with the best validation precision;
  here the last epoch's codes are evaluated.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hashvae.core import losses
from hashvae.core.models import Dense, Encoder, ModelSpec, SpecModule, WideDense
from hashvae.methods import blocks
from hashvae.methods.registry import Neighbours, register

PRIOR_CORRELATION = 0.99  # tau, the prior's correlation along an edge (public constant)
NEIGHBOURS = Neighbours(k=10, similarity="tfidf", encode=True)


def log_one_minus_squared_correlation(a):
  """log(1 - gamma^2) for gamma = 2 sigmoid(a) - 1, as log 4 - softplus(a)
  - softplus(-a) (1 - gamma^2 = 4 sigmoid(a) sigmoid(-a)): finite where
  gamma rounds to +-1. Any shape, elementwise."""
  return jnp.log(4.0) - jax.nn.softplus(a) - jax.nn.softplus(-a)


def log_softplus(x):
  """log(softplus(x)), elementwise; below -20, x itself (softplus(x) = e^x
  there to float precision, and its float32 value underflows to 0 near
  -100, whose log would make the KL infinite)."""
  low = x < -20.0
  return jnp.where(low, x, jnp.log(jax.nn.softplus(jnp.where(low, 0.0, x))))


def edge_kl(mu_i, scale_i, mu_j, scale_j, correlation_logits, tau):
  """D_ij = KL(q(z_i, z_j) || p(z_i, z_j)) - KL_i - KL_j, summed over bits.

  mu, scale [batch, bits] of the two ends; correlation_logits a [batch,
  bits] (gamma = 2 sigmoid(a) - 1); tau the prior's correlation in [0, 1)
  -> [batch].
  """
  gamma = 2.0 * jax.nn.sigmoid(correlation_logits) - 1.0
  spread = (jnp.square(mu_i) + jnp.square(mu_j)
            + jnp.square(scale_i) + jnp.square(scale_j))
  product = mu_i * mu_j + gamma * scale_i * scale_j
  per_bit = (tau * (tau * spread - 2.0 * product) / (2.0 * (1.0 - tau ** 2))
             + 0.5 * jnp.log1p(-tau ** 2)
             - 0.5 * log_one_minus_squared_correlation(correlation_logits))
  return jnp.sum(per_bit, axis=-1)


def pair_edge_kl(out, tau=PRIOR_CORRELATION):
  """D between each batch item and its drawn neighbour ([batch]), from the
  network's outputs on both (`out["neighbour"]`)."""
  nbr = out["neighbour"]
  return edge_kl(out["mu"], out["scale"], nbr["mu"], nbr["scale"],
                 out["correlation"] + nbr["correlation"], tau)


class SnuhModel(SpecModule):
  """Encoder, Gaussian heads with means in (0, 1), the per-document half of
  the correlation encoder, the study's decoder."""

  def setup(self):
    # Named `encoder`: the sparse input path and the row-wise optimiser
    # address params["encoder"]["Dense_0"]["kernel"].
    self.encoder = Encoder(self.hidden, self.batch_norm, input_dims=self.dims)
    self.logits_head = Dense(self.bits)
    self.scale_head = Dense(self.bits)
    self.correlation_head = Dense(self.bits)
    self.decoder = WideDense(self.dims)
    # Read by the semi-supervised form only (semi_supervised.py); unused
    # outputs are compiled away, so snuh's program is unchanged.
    self.classifier = Dense(self.num_classes)

  def code_scores(self, x, train: bool = False):
    """[batch, dims] (or a sparse batch) -> [batch, bits] logits l; the code
    1[sigmoid(l / T) > 1/2] = 1[l > 0] for any temperature T."""
    return self.logits_head(self.encoder(x, train))

  def __call__(self, x, temperature, train: bool = True):
    """One stochastic pass; `temperature` divides the logits inside mu.

    Returns [batch, ...]: hidden, logits, mu, scale, logvar (2 log scale),
    correlation (c, a pair's a_ij = c_i + c_j) [batch, bits], sample (z),
    recon_logits [batch, dims] and class_logits [batch, classes] (from the
    hidden vector, as SSB-VAE's classifier).
    """
    h = self.encoder(x, train)
    logits = self.logits_head(h)
    mu = jax.nn.sigmoid(logits / temperature)
    scale_logits = self.scale_head(h)
    scale = jax.nn.softplus(scale_logits)
    z = mu + scale * jax.random.normal(self.make_rng("sample"), mu.shape, mu.dtype)
    return dict(hidden=h, logits=logits, mu=mu, scale=scale,
                logvar=2.0 * log_softplus(scale_logits),
                correlation=self.correlation_head(h), sample=z,
                recon_logits=self.decoder(z), class_logits=self.classifier(h))


def snuh_model(spec: ModelSpec):
  return SnuhModel(**dataclasses.asdict(spec))


def snuh_terms(out, batch, options, tau=PRIOR_CORRELATION):
  """(rec, node KL, edge D), batch means."""
  rec = jnp.mean(blocks.reconstruction(out, batch, options))
  kl = jnp.mean(losses.gaussian_kl(out["mu"], out["logvar"]))
  return rec, kl, jnp.mean(pair_edge_kl(out, tau))


@register("snuh", weights=dict(beta=1.0 / 512, edge=1.0), options=blocks.RECONSTRUCTION,
          choices=blocks.RECONSTRUCTION_CHOICES, model=snuh_model, neighbours=NEIGHBOURS)
def snuh(out, batch, hp, options):
  """SNUH: Gaussian VAE (means in (0, 1)) under a kNN-graph tree prior, one
  drawn edge per item: rec + beta (KL + edge * D)."""
  rec, kl, edge = snuh_terms(out, batch, options)
  loss = rec + hp["beta"] * (kl + hp["edge"] * edge)
  return loss, dict(loss=loss, reconstruction=rec, kl=kl, edge_kl=edge)
