"""Files that are whole or absent: each is written under a temporary name
beside its place and renamed over it, so a crash never leaves a torn one.
The lowest layer: datasets, caches and a sweep's outputs all write this way.
"""
