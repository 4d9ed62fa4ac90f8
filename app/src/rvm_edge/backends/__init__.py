"""Inference backends behind one interface; see :mod:`rvm_edge.backends.base`."""

from rvm_edge.backends.base import Backend, BackendError, available_backends, create_backend

__all__ = ["Backend", "BackendError", "available_backends", "create_backend"]
