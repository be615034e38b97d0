"""The `database` fixture lives in tests/conftest.py (shared with tests/intake)."""
