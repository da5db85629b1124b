"""Hashing methods: the registry, the blocks they share, and the methods.

Each method lives in a module of this package and registers itself on
import (registry.py says what a method declares). A user's method registers
the same way from its own module (`--config.extra_modules`).
"""

from hashvae.methods import (  # noqa: F401  (importing registers a method)
                                    ammi,
                                    bmsh,
                                    classical,
                                    classical_supervised,
                                    corrsh,
                                    doc2hash,
                                    infomax,
                                    nash,
                                    nbrreg,
                                    pairrec,
                                    pseudo_label,
                                    rbsh,
                                    registry,
                                    semi_supervised,
                                    smash,
                                    snuh,
                                    study,
                                    vdsh_sp,
                                    views,
                                    wish,
)
from hashvae.methods.blocks import (
                                    class_probabilities,
                                    pairwise,
                                    pointwise,
                                    predicted_similarity,
                                    reconstruction,
                                    sigmoid_labels,
)
from hashvae.methods.registry import (
                                    METHODS,
                                    AtLeast,
                                    Method,
                                    MethodError,
                                    Neighbours,
                                    Options,
                                    OwnUpdate,
                                    Weights,
                                    default_options,
                                    get,
                                    import_modules,
                                    register,
                                    register_fitted,
                                    shared_weights,
)

__all__ = ["METHODS", "AtLeast", "Method", "MethodError", "Neighbours", "Options", "OwnUpdate",
           "Weights",
           "class_probabilities", "default_options", "get", "import_modules", "pairwise",
           "pointwise", "predicted_similarity", "reconstruction", "register",
           "register_fitted", "registry", "shared_weights", "sigmoid_labels"]
