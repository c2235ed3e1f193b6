"""nlclf: train, evaluate and apply text classifiers from the shell.

The model is the multilayer perceptron of the course notes on non-linear
models, written in NumPy with every gradient derived by hand.
"""

__version__ = "0.1.0"
