"""The faiss index a run's codes are written to, read back by faiss itself."""

import numpy as np
import pytest

from hashvae.retrieval import faiss_export
from hashvae.retrieval.multi_index import MultiIndex

faiss = pytest.importorskip("faiss", reason="faiss is an optional extra: pip install .[faiss]")


@pytest.mark.parametrize("bits", [12, 16, 64])
def test_faiss_reads_back_the_codes_and_finds_the_same_distances(tmp_path, bits):
  rng = np.random.default_rng(bits)
  db = rng.integers(0, 2, (300, bits)).astype(np.uint8)
  queries = rng.integers(0, 2, (7, bits)).astype(np.uint8)
  path = str(tmp_path / "codes.faiss")
  faiss_export.write(db, path)
  table = faiss.read_index_binary(path)
  assert table.ntotal == 300
  distances, positions = table.search(faiss_export.packed(queries), 20)
  ours = MultiIndex.build(db)
  for q, query in enumerate(queries):
    want_positions, want_distances, _ = ours.search(query, 20)
    np.testing.assert_array_equal(distances[q], want_distances)  # ties may differ in order
    np.testing.assert_array_equal(distances[q], (query != db[positions[q]]).sum(1))
