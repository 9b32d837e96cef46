"""Benchmarks: end-to-end speed with a stated definition."""
