"""Benchmarks run by hand (`scripts/bench.sh`), never by the test suite."""
