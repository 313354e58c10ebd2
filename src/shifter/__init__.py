"""Shifter: containers for HPC."""

__version__ = "0.1.0"
