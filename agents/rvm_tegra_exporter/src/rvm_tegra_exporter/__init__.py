"""Jetson figures for node-exporter's textfile collector.

tegrastats lines (memory, GPU load, power rails), thermal zones with their trip points and the
nvpmodel power mode, written atomically as one ``.prom`` file. On a host that is not a Jetson it
writes whatever of this exists (often nothing but its own health metrics) and never fails.
"""

__version__ = "0.1.0"
