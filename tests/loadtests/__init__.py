"""Tests of the load-test helpers (the benchmarks themselves never run under pytest)."""
