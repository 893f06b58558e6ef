"""Helpers shared by several test files (fake servers, stand-ins of real artifacts, CLI runners); fixtures stay in conftest.py."""
