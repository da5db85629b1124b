"""The scale benchmark's corpus: a seeded synthetic RCV1-shaped corpus in the
VDSH .mat layout (20 classes, 10,000 terms, about 60 nonzeros a document, a
tenth as many validation (cv) and test documents as training ones), drawn in
blocks so that memory stays bounded, and cached on disk by size and seed.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import scipy.io
import scipy.sparse

# The corpus: RCV1 as VDSH ships it (10,000 terms) with 20 single-label
# classes. A token is a background term (Zipf over the vocabulary: a few
# terms in most documents, most terms rare) or, with TOPIC_SHARE, a term of
# its class's topic (TOPIC_TERMS terms drawn from the vocabulary, themselves
# Zipf-weighted), which is what makes the classes learnable.
CLASSES, TERMS, NONZEROS = 20, 10_000, 60
ZIPF = 1.0
TOPIC_TERMS, TOPIC_SHARE = 100, 0.25
BLOCK = 50_000  # documents drawn at once: bounds the generator's working set
GENERATOR = 1  # part of the cache file's name: change it when a seed's corpus changes
SPLITS = (("train", 1), ("cv", 10), ("test", 10))  # name, training documents per one



def zipf_cdf(n: int, exponent: float) -> np.ndarray:
  """[n] cumulative probabilities of ranks 1..n with weight rank**-exponent."""
  weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
  return np.cumsum(weights) / weights.sum()


def _draw(rng, cdf: np.ndarray, size: int) -> np.ndarray:
  """[size] indices into `cdf`'s categories (inverse transform)."""
  # The clip guards against cdf[-1] rounding a hair below 1.
  return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _unique_sorted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(the distinct values of `keys` ascending, how often each occurs).

  A sort and a comparison of neighbours: for these int64 keys faster than
  np.unique, which hashes them first (numpy 2)."""
  keys = np.sort(keys)
  first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
  return keys[first], np.diff(np.append(first, len(keys)))


def _term_counts(rng, labels: np.ndarray, widths: np.ndarray, topics: np.ndarray,
                 background: np.ndarray, topic_cdf: np.ndarray) -> scipy.sparse.csr_matrix:
  """[docs, terms] CSR term counts, document i with exactly widths[i] distinct
  terms of its class labels[i].

  Tokens are drawn with replacement until every document has its width in
  distinct terms (a repeat adds to a term's count): each round draws only
  the documents' shortfall, so the rounds shrink fast. Every set is a sorted
  array of keys doc * TERMS + term, never a dense [docs, terms] array."""
  docs = len(labels)
  seen = np.empty(0, np.int64)  # sorted distinct keys so far
  distinct = np.zeros(docs, np.int64)
  drawn = []
  while (short := widths - distinct).any():
    rows = np.repeat(np.arange(docs, dtype=np.int64), short)
    terms = _draw(rng, background, len(rows))
    from_topic = rng.random(len(rows)) < TOPIC_SHARE
    topic_terms = topics[labels[rows], _draw(rng, topic_cdf, len(rows))]
    keys = rows * TERMS + np.where(from_topic, topic_terms, terms)
    drawn.append(keys)
    fresh, _ = _unique_sorted(keys)
    at = np.searchsorted(seen, fresh)
    known = np.zeros(len(fresh), bool)
    inside = at < len(seen)
    known[inside] = seen[at[inside]] == fresh[inside]
    # Inserting sorted keys at their sorted places keeps `seen` sorted in
    # one linear pass, where a union would sort everything again.
    seen = np.insert(seen, at[~known], fresh[~known])
    distinct += np.bincount(fresh[~known] // TERMS, minlength=docs)
  keys, counts = _unique_sorted(np.concatenate(drawn))
  indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // TERMS, minlength=docs))])
  return scipy.sparse.csr_matrix((counts.astype(np.float64), keys % TERMS, indptr),
                                 shape=(docs, TERMS))


def _documents(rng, docs: int, topics, background, topic_cdf):
  """(CSR term counts [docs, TERMS], labels [docs] int) in blocks of BLOCK."""
  parts, labels = [], []
  for first in range(0, docs, BLOCK):
    n = min(BLOCK, docs - first)
    block_labels = rng.integers(0, CLASSES, n)
    widths = np.maximum(rng.poisson(NONZEROS, n), 1)  # Poisson: no row far wider
    parts.append(_term_counts(rng, block_labels, widths, topics, background, topic_cdf))
    labels.append(block_labels)
  return scipy.sparse.vstack(parts, format="csr"), np.concatenate(labels)


def rcv1_like(train_items: int, seed: int = 0) -> dict:
  """A seeded RCV1-shaped corpus in the VDSH .mat layout.

  Returns {"train", "cv", "test": scipy.sparse CSR [items, TERMS] float64
  tf-idf (term count x smoothed idf of the training split, all > 0), and
  "gnd_train", "gnd_cv", "gnd_test": [items, CLASSES] uint8 one-hot}, with
  train_items, train_items // 10 and train_items // 10 items."""
  topic_rng, *split_rngs = [np.random.default_rng(s)
                            for s in np.random.SeedSequence(seed).spawn(1 + len(SPLITS))]
  # Each class's topic: TOPIC_TERMS distinct terms (a random key per term,
  # the smallest keys win); classes may share a few.
  topics = np.argsort(topic_rng.random((CLASSES, TERMS)), axis=1)[:, :TOPIC_TERMS]
  background, topic_cdf = zipf_cdf(TERMS, ZIPF), zipf_cdf(TOPIC_TERMS, ZIPF)
  mat, idf = {}, None
  for (name, per), rng in zip(SPLITS, split_rngs, strict=True):
    counts, labels = _documents(rng, train_items // per, topics, background, topic_cdf)
    if idf is None:  # the training split's: held-out documents are weighted as unseen
      df = np.bincount(counts.indices, minlength=TERMS)
      idf = np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0
    counts.data *= idf[counts.indices]
    mat[name] = counts
    mat[f"gnd_{name}"] = np.eye(CLASSES, dtype=np.uint8)[labels]
  return mat


def corpus_path(cache_dir: str, train_items: int, seed: int) -> str:
  """The cache file of (train_items, seed) under this generator's parameters."""
  name = (f"rcv1_like_g{GENERATOR}_n{train_items}_s{seed}_c{CLASSES}_t{TERMS}"
          f"_w{NONZEROS}_k{TOPIC_TERMS}_p{TOPIC_SHARE}_z{ZIPF}")
  return os.path.join(cache_dir, name + ".mat")


def cached_corpus(cache_dir: str, train_items: int, seed: int = 0) -> tuple[str, dict]:
  """(path, facts) of the corpus, generated and saved unless already cached.

  facts: generate_s (when it was generated), nonzeros per split, and
  whether this call reused the file. The .mat is written under a temporary
  name and renamed, and the facts (.json) after it, so an interrupted write
  is never taken for a finished one."""
  path = corpus_path(cache_dir, train_items, seed)
  facts_path = path[:-len(".mat")] + ".json"
  if os.path.isfile(path) and os.path.isfile(facts_path):
    with open(facts_path, encoding="utf-8") as f:
      return path, dict(json.load(f), cached=True)
  os.makedirs(cache_dir, exist_ok=True)
  start = time.perf_counter()
  mat = rcv1_like(train_items, seed)
  generate_s = time.perf_counter() - start
  with open(path + ".partial", "wb") as f:
    scipy.io.savemat(f, mat, do_compression=False)
  os.replace(path + ".partial", path)
  facts = dict(generate_s=generate_s,
               **{f"{name}_nonzeros": int(mat[name].nnz) for name, _ in SPLITS})
  with open(facts_path + ".partial", "w", encoding="utf-8") as f:
    json.dump(facts, f)
  os.replace(facts_path + ".partial", facts_path)
  return path, dict(facts, cached=False)
