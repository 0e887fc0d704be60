"""Straightforward reference formulations, for tests and benchmarks only."""
