"""Session fixtures for the training tests (loaded by conftest.py)."""
