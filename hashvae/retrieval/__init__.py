"""From codes to answers: Hamming distances (hamming), counts per distance
over the hypercube of codes (hypercube), the retrieval metrics (metrics), a
trained encoder rebuilt for inference (encoder), and the search index: its
file format (index_file: a JSON header and memory-mapped arrays), building
one from a sweep (index_build), opening and querying it (index,
index_check, ranking, multi_index), with a numpy encoder (numpy_encoder)
and text analyser (query_text) so that a query loads no jax. Loads no
training code.
"""
