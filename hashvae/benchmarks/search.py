"""Searching a trained Snippets index with test snippets' text.

    python -m launch.benchmark --sections=search --sweep=runs/snippets/snippets_16

Builds the index of the best SSB-VAE run at level 1.0 of a finished sweep,
queries it with the text of 200 test snippets, and reports how often the top
10 share the query's label, next to that run's p@100; then times the search
CLI answering one query after loading (as it prints it), and the whole CLI
call.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUERIES = 200


def run(sweep_dir: str):
  """Yields the search_top10_label_agreement and search_cli_one_query figures."""
  from hashvae import api
  from hashvae.retrieval import index, metrics

  if not sweep_dir:
    raise ValueError("the search section needs --sweep=WORKDIR of a finished text sweep")
  sweep = api.Sweep(sweep_dir)
  run_id = sweep.best_run(1.0, "p@100", "ssb_vae")
  path = os.path.join(tempfile.mkdtemp(), "index" + index.SUFFIX)
  index.build(sweep, run_id, path)
  loaded = index.load(path)
  test = sweep.dataset.test
  # Queries with a vocabulary term: the index refuses one with none.
  known = np.flatnonzero(np.diff(test.inputs.indptr) > 0)
  pick = np.random.default_rng(0).choice(known, size=min(QUERIES, len(known)),
                                         replace=False)
  start = time.perf_counter()
  codes = loaded.encode_texts([test.texts[i] for i in pick])
  positions, _ = loaded.search(codes, 10)
  seconds = time.perf_counter() - start
  agree = float((loaded.db_labels[positions] == test.labels[pick][:, None]).mean())
  same = metrics.evaluate(codes, loaded.db_codes, test.labels[pick], loaded.db_labels,
                          (10, 100))
  yield dict(figure="search_top10_label_agreement", run=run_id, queries=len(pick),
             top10_agreement=agree, p_at_100_same_queries=same["p@100"],
             p_at_10_same_queries=same["p@10"],
             run_p_at_100_all_queries=float(sweep.row(run_id)["p@100"]),
             encode_and_search_s=seconds)
  query = test.texts[int(pick[0])]
  start = time.perf_counter()
  proc = subprocess.run([sys.executable, "-m", "launch.search", f"--index={path}",
                         "--text", query, "--k=10"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  total = time.perf_counter() - start
  answered = re.search(r"answered in (\d+) ms after loading", proc.stderr)
  yield dict(figure="search_cli_one_query", returncode=proc.returncode,
             ms_after_loading=int(answered.group(1)) if answered else None,
             whole_call_s=total, index_mb=os.path.getsize(path) / 2**20)
