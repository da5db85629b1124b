"""The benchmark sections, one module each; `python -m launch.benchmark` runs them.

- train: the training step and the sweep (vmap against one run at a time,
  dense against sparse input, exact against fast Adam, the roofline, where
  a step's time goes, the sweep's estimate).
- devices: the run axis over 1, 2 and 4 simulated CPU devices.
- search: a trained Snippets index searched with test snippets' text.
- scale: loading, training and evaluation against corpus size, on the
  RCV1-shaped corpora of rcv1_like (100k to 800k documents).
- accelerator: the Snippets grid, one epoch at 800k documents and evaluate
  at 80k x 880k on whatever device is at hand, with its peak memory.
- peak_rss, roofline: a process's peak resident memory; the machine's
  matmul and memory-bandwidth peaks.
- ablations: the step without Adam, or without the reconstruction term, as
  a registered optimiser mode and method (the train section's
  step_breakdown selects them through the config).
- common: timing (contenders taking turns), and the runs and data the
  sections share.

The eval section is launch/bench_eval.py.
"""
