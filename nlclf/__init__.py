"""nlclf: train, evaluate and apply text classifiers from the shell.

The model is the multilayer perceptron of the course notes on non-linear models, written in
NumPy with every gradient derived by hand.

Shapes, in every module's docstrings and end-of-line comments, use one set of letters:

    N  batch (texts, examples)        H  hidden units of a layer
    V  vocabulary (input columns)     C  classes
    D  features (the width of f)      T  tokens kept a text (embed_concat)
    E  embedding width                U  rows a sparse gradient touches

A module adds its own where it needs one (B hash buckets, K ensemble members, M bins,
R resamples) and says so.
"""

__version__ = "0.1.0"
