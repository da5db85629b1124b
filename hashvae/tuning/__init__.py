"""Choosing each method's weights on validation: the candidates and the
search space (tune_space), the metric it maximises (metric_choice), how a
search ranks and cuts them (selection),
the search with successive halving and the final sweep (tune), and the
files it writes (tune_outputs).
"""
