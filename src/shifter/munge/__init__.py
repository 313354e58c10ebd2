"""MUNGE authentication (libmunge through ctypes)."""
