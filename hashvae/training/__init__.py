"""Runs and grids of runs: one training run as a pure function (train), a
grid of seeds x levels x weights as one vmapped program in chunks that fit
a device (grid), and the host-fitted methods' grids (fitted).

Takes typed specs (training.specs), never the experiment config.
"""
