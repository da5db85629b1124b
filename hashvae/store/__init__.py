"""A sweep's files: results.csv and codes.npz (results), the workdir and its
lock, checkpoints, the per-epoch metrics log and the reports drawn from
results. Knows nothing of training; imports no other hashvae package.
"""
