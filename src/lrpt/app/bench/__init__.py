"""Benchmarks: side-by-side speed (``--speed``), accuracy suites and their paper claims."""
