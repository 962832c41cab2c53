"""Helpers shared by the tests (import as `from tests.helpers.<module> import ...`); fixtures stay in conftest.py."""
