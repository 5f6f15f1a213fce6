"""Helpers shared by the tests: tiny projects, archives, models, studies and servers."""
