"""The device math a run is made of, with no notion of a method or a sweep.

The networks and their code layers (models), the loss terms (losses), the
sparse bag-of-words input path (sparse), the optimisers (optim), the
label mask of the labelled-fraction protocol (label_mask) and the run
axis's placement over devices (sharding). Imports only hashvae.data.
"""
