"""rvm-edge: the inference service of an RVM device."""

__version__ = "0.1.0"
