"""Helpers shared by the tests (plain modules; fixtures live in the conftest.py files)."""
