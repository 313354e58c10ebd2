"""Fixtures: see the module docstring once written (registered in tests/conftest.py)."""
