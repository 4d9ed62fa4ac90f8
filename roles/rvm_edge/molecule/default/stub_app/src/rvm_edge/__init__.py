"""rvm-edge interface stub (see pyproject.toml): only what the rvm_edge role talks to."""

from importlib.metadata import version

__version__ = version("rvm-edge")
