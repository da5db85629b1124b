"""The classical baselines that read the run's labelled items: SSH
(semi-supervised hashing, Wang, Kumar and Chang 2012) and CCA-ITQ (Gong et
al. 2013), fitted on the host.

Registered and fed as the unsupervised ones in classical.py, whose docstring
says how wide inputs are reduced and why each fit runs on one BLAS thread.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from hashvae.methods.projections import (
  features,
  fix_signs,
  itq,
  labelled_rows,
  need_directions,
  one_blas_thread,
  principal_directions,
  to_bits,
  top_eigenvectors,
)
from hashvae.methods.registry import register_fitted


def pairwise_scatter(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """X_l^T S X_l [dims, dims] for S_ij = +1 when items i and j share a label,
  -1 otherwise, without forming the [l, l] matrix S.

  Items with the same label row have the same row of S, so with Z [g, dims]
  the sums of x over each of the g distinct label rows,
  X_l^T S X_l = Z^T S_g Z with S_g [g, g] between the distinct rows
  (g = classes for single-label data).

  Args:
    x: [l, dims] the labelled items' features; rows: [l, classes] their labels.
  """
  distinct, group = np.unique(rows, axis=0, return_inverse=True)
  sums = np.zeros((len(distinct), x.shape[1]))
  np.add.at(sums, group.ravel(), x)
  similar = np.where(distinct @ distinct.T > 0, 1.0, -1.0)
  return sums.T @ similar @ sums


def violation_scatter(x: np.ndarray, rows: np.ndarray, p: np.ndarray) -> np.ndarray:
  """X_l^T T X_l [dims, dims] for T_ij = p_i p_j on the pairs whose
  projections contradict their label (S_ij p_i p_j < 0, S as in
  pairwise_scatter), 0 on the others, without forming the [l, l] matrix T.

  A pair is contradicted when it shares a label and p_i, p_j have opposite
  signs, or shares none and they have the same sign, so T depends on the
  items only through p and their (label row, sign of p) group. With Z+, Z-
  [g, dims] the sums of p_i x_i over each distinct label row's items with
  p > 0 and p <= 0 (p = 0 adds nothing), z+, z- [dims] their column sums,
  and A [g, g] = 1 where two rows share a label, 0 otherwise:
      X_l^T T X_l = Z+^T (1 - A) Z+ + Z-^T (1 - A) Z- + Z+^T A Z- + Z-^T A Z+
                  = z+ z+^T + z- z-^T - (Z+ - Z-)^T A (Z+ - Z-),
  one [g, g] product (g can be large for multi-label data).

  Args:
    x: [l, dims] the labelled items' features; rows: [l, classes] their
      labels; p: [l] their projections on one direction.
  """
  distinct, group = np.unique(rows, axis=0, return_inverse=True)
  sums = np.zeros((2, len(distinct), x.shape[1]))  # [p > 0, row, dims]
  np.add.at(sums, ((p > 0).astype(int), group.ravel()), p[:, None] * x)
  below, above = sums
  share = (distinct @ distinct.T > 0).astype(np.float64)
  up, down, apart = above.sum(axis=0), below.sum(axis=0), above - below
  return np.outer(up, up) + np.outer(down, down) - apart.T @ share @ apart


def sequential_directions(x: np.ndarray, keep: np.ndarray, rows: np.ndarray, eta: float,
                          step: float, bits: int):
  """Sequential projection learning (SPLH; Wang, Kumar and Chang, TPAMI
  2012): each bit corrects the labelled pairs the bits before it got wrong.

  Bit k is the top eigenvector w_k of the adjusted covariance of the residual
  data (the part orthogonal to w_1 .. w_{k-1}),
      M_k = X_l^T S_k X_l / n^2 + eta * X^T X / n,  S_1 = S,
  then the pairs whose projections p = X_l w_k contradict their label
  (S_ij p_i p_j < 0: a shared label on opposite sides of the hyperplane, or
  none on the same side) weigh more for the next bit:
      S_{k+1} = S_k - step * T_k,  T_k,ij = p_i p_j / mean(p^2) on those pairs.
  T_k has the opposite sign of S there, so |S_ij| grows and no label flips.
  Dividing by mean(p^2) over the labelled items makes `step` (the paper's
  alpha, which multiplies the raw products) independent of the data's scale.
  w_k is sought among the directions orthogonal to the earlier ones (the
  eigenvectors of M restricted to them), which is the residual form's
  answer while M_k has a positive eigenvalue there; where it has none, the
  residual data offer only their null space (the earlier directions) and
  this keeps the least bad new direction.
  Why: X_l^T S X_l has rank at most the number of distinct label rows (9
  positive eigenvalues on digits' 10 classes), so the orthogonal solution
  takes its other directions from the variance term alone; each T_k adds
  up to twice that rank, so the later bits are chosen by the labels too.

  Args:
    x: [n, r] the centred database; keep: [l] the labelled items' rows;
    rows: [l, classes] their labels.
  Returns:
    (values [bits]: each bit's eigenvalue, the objective it reaches;
    directions [r, bits], orthonormal).
  """
  n, width = x.shape
  labelled = x[keep]
  adjusted = eta * x.T @ x / n
  if len(keep):
    adjusted += pairwise_scatter(labelled, rows) / n**2
  residual = np.eye(width)  # orthonormal basis of what w_1 .. w_{k-1} leave
  values, directions = [], []
  for _ in range(bits):
    value, vectors = top_eigenvectors(residual.T @ adjusted @ residual, residual.shape[1])
    w = residual @ vectors[:, 0]
    residual = residual @ vectors[:, 1:]
    values.append(value[0])
    directions.append(w)
    if len(keep):
      p = labelled @ w
      adjusted -= (step / max(np.mean(p**2), 1e-300) / n**2
                   * violation_scatter(labelled, rows, p))
  return np.array(values), fix_signs(np.stack(directions, axis=1))


# eta, step: chosen on validation queries (digits: a stratified fifth of the
# reported database split off as queries; Snippets: its validation split;
# 16 bits, levels 0.1 .. 1.0, seeds 10-12, never the test queries): mean
# p@100 over the levels was flat within 0.01 for eta 1e-5 .. 3e-4 and step
# 0.5 .. 1 (digits 0.70, Snippets 0.64 - 0.65), lower at eta 1e-3 / 1e-2
# (Snippets 0.63 / 0.58: a variance term that outweighs ~900 labelled items
# at level 0.1); the middle of the flat region is taken.
# docs/reproduction.md, "SSH", has the figures.
@register_fitted("ssh", weights=dict(eta=1e-4, step=0.5),
                 options=dict(ssh_directions="sequential", ssh_rotation="itq"),
                 choices=dict(ssh_directions=("sequential", "orthogonal"),
                              ssh_rotation=("itq", "none")))
@one_blas_thread
def ssh(dataset, labelled, rng, hp, options, bits):
  """Semi-supervised hashing (Wang, Kumar and Chang, "Semi-supervised hashing
  for large-scale search", TPAMI 2012 / CVPR 2010).

  With X the centred database and X_l its labelled items, the paper's
  adjusted covariance is
      M = X_l^T S X_l / n^2 + eta * X^T X / n,
  S_ij = +1 for labelled pairs that share a label, -1 otherwise: the
  empirical fitness of the codes on the labelled pairs plus eta times the
  variance of the projections as a regulariser. Dividing both terms by the
  database size n (the paper's eta is this eta * n) makes eta independent
  of the dataset's size and of the data's scale while keeping the paper's
  dependence on the number of labelled items l: the supervised term grows
  as (l / n)^2, so the codes respond to the labelled fraction.

  Options (config.loss):
  - ssh_directions: "orthogonal", W [r, bits] = the top eigenvectors of M
    (the paper's orthogonal solution); "sequential" (default), the
    sequential projection learning of sequential_directions (weight `step`).
  - ssh_rotation: "none", code = 1[X W > 0] (the paper's codes);
    "itq" (default), code = 1[X W Lambda^1/2 R > 0] with Lambda the
    directions' eigenvalues (clipped at 0) and R the ITQ rotation. Relaxing
    orthogonality to a penalty rho * ||W^T W - I||^2 (the paper's
    non-orthogonal variant) makes W (I + Lambda / rho)^1/2 R a solution for
    every rotation R; a weak penalty (rho -> 0; the common factor changes no
    sign) weighs each direction by the square root of what it adds to the
    objective, and ITQ picks R. Why: with bits beyond the labels' rank, the
    orthogonal codes give the directions the labels do not shape as much
    weight in the Hamming distance as those they do (on digits at 16 bits,
    9 of 16 bits, and the 9 span nearly the top principal directions, so
    p@100 was ~0.39 at every level).
  ssh_directions="orthogonal", ssh_rotation="none" is the orthogonal SSH of
  the paper (with eta = 0.01, this method before the options). Only the
  labels of the run's labelled items are read; with none, the directions
  are the principal ones.
  """
  db, queries = features(dataset, rng, bits)
  need_directions("ssh", bits, db.shape[1])
  keep = np.flatnonzero(np.asarray(labelled) > 0)
  rows = labelled_rows(dataset, labelled)
  if options.ssh_directions == "sequential":
    values, w = sequential_directions(db, keep, rows, hp["eta"], hp["step"], bits)
  else:
    adjusted = hp["eta"] * db.T @ db / len(db)
    if len(keep):
      adjusted += pairwise_scatter(db[keep], rows) / len(db)**2
    values, w = top_eigenvectors(adjusted, bits)
  if options.ssh_rotation == "none":
    return to_bits(db @ w), to_bits(queries @ w)
  scale = np.sqrt(np.clip(values, 0.0, None))
  projection = w * (scale if scale.any() else 1.0)  # eta = 0 without labels: M = 0
  rotation, _ = itq(db @ projection, rng)
  return (to_bits(db @ projection @ rotation),
          to_bits(queries @ projection @ rotation))


def cca(x: np.ndarray, y: np.ndarray, k: int, ridge: float):
  """Regularised canonical correlation analysis of two views.

  Solves C_xy C_yy^-1 C_yx w = rho^2 (C_xx + ridge_x I) w for the top k
  generalised eigenvectors, normalised so that w^T (C_xx + ridge_x I) w = 1;
  each regulariser is `ridge` times its view's mean variance (the label
  view of one-hot rows is singular without it).

  Args:
    x: [items, dx], y: [items, dy], both centred.
  Returns:
    (correlations rho [k], directions [dx, k]).
  """
  def covariance(a, b):
    return a.T @ b / len(a)

  def regularised(c):
    return c + ridge * max(np.trace(c) / len(c), 1e-12) * np.eye(len(c))

  cxx, cyy, cxy = regularised(covariance(x, x)), regularised(covariance(y, y)), covariance(x, y)
  between = cxy @ np.linalg.solve(cyy, cxy.T)
  between = (between + between.T) / 2  # symmetric up to rounding
  values, vectors = scipy.linalg.eigh(between, cxx)
  order = np.argsort(-values, kind="stable")[:k]
  return np.sqrt(np.clip(values[order], 0.0, None)), fix_signs(vectors[:, order])


# ridge: 0.1 of the mean variance; on digits (search split 1, seeds 10-12)
# p@100 at levels 0.1 / 1.0 was 0.81 / 0.88 against 0.73 / 0.88 at 1e-4
# (fewer labelled items, more to regularise); on Snippets 0.58 / 0.64
# against 0.56 / 0.63.
@register_fitted("cca_itq", weights=dict(ridge=0.1))
@one_blas_thread
def cca_itq(dataset, labelled, rng, hp, options, bits):
  """CCA followed by iterative quantisation (Gong, Lazebnik, Gordo and
  Perronnin, "Iterative quantization: a Procrustean approach to learning
  binary codes for large-scale image retrieval", TPAMI 2013, section 3.2;
  Gong and Lazebnik, CVPR 2011).

  CCA between the labelled items' features and their label rows (one-hot,
  or multi-hot for multi-label data) gives `bits` directions W, each
  scaled by its canonical correlation as the paper does (directions beyond
  the label view's rank carry ~0 correlation and so little weight); ITQ
  rotates the projections of the whole centred database; code =
  1[X W R > 0]. `ridge` regularises both covariances. Only the labels of
  the run's labelled items are read; with fewer than two labelled items it
  falls back to PCA-ITQ.
  """
  db, queries = features(dataset, rng, bits)
  need_directions("cca_itq", bits, db.shape[1])
  keep = np.flatnonzero(np.asarray(labelled) > 0)
  if len(keep) < 2:
    projection = principal_directions(db, bits)
  else:
    x = db[keep] - db[keep].mean(axis=0)
    y = labelled_rows(dataset, labelled)
    rho, directions = cca(x, y - y.mean(axis=0), bits, hp["ridge"])
    projection = directions * rho
  rotation, _ = itq(db @ projection, rng)
  return (to_bits(db @ projection @ rotation),
          to_bits(queries @ projection @ rotation))
