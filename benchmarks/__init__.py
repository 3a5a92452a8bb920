"""Standalone benchmark scripts (run as ``python benchmarks/<name>.py``); not part of the package."""
