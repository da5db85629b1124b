"""From codes to answers: Hamming distances (hamming), the retrieval metrics
(metrics), a trained encoder rebuilt for inference (encoder) and the search
index (index, index_check). Loads no training code.
"""
