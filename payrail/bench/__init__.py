"""Benchmarks: scripts that print their figures beside a reference measured in the same run."""
