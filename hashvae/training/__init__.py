"""Runs and grids of runs: the typed records they take (specs), one training
run as a pure function (train; the data on the device, device_data; the
trained network's codes, streamed in blocks, encode), a grid of seeds x
levels x weights as one vmapped program (grid) in chunks that fit a device
(chunking), and the host-fitted methods' grids (fitted).

Takes typed specs (training.specs), never the experiment config.
"""
