"""Session fixtures for the inference tests (loaded by conftest.py)."""
