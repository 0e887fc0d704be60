"""Small self-contained experiments (runnable on CPU) used by tools/ and tests."""
