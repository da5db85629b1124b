"""The benchmark sections, one module each; `python -m launch.benchmark` runs them.

- train: the training step and the sweep (vmap against one run at a time,
  dense against sparse input, exact against fast Adam, the roofline, where
  a step's time goes, the sweep's estimate).
- devices: the run axis over 1, 2 and 4 simulated CPU devices.
- search: a trained Snippets index searched with test snippets' text.
- ablations: the step without Adam, or without the reconstruction term, as
  a registered optimiser mode and method (the train section's
  step_breakdown selects them through the config).
- common: timing (contenders taking turns), and the runs and data the
  sections share.

The eval section is launch/bench_eval.py.
"""
