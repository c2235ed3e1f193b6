"""The network: pure NumPy math, knows nothing about text, YAML or files."""
