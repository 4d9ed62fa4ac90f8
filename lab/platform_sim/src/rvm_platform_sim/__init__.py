"""rvm-platform-sim: a lab-only stand-in for the MyRVM platform's edge API (see README.md)."""

__version__ = "0.1.0"
