"""Load tests and benchmarks of the pre-venue order path (issue 4, items 4-6)."""
